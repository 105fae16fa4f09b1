"""The rows of the equal-budget table of ``bench/reproduce.py`` and the table from tracked runs.

A row is a recipe, optionally with ``-S`` overrides (BBN with ``model.init=fan_out``), run with
several seeds or one. Its runs are found in the MLflow store by the key ``(params.recipe,
params.model.init)`` (the init from the recipe unless the row overrides it), and only the run that
holds the evaluation counts: for a recipe with a classifier stage (``classifier.method`` not
``none``) the classifier stage's run (tag ``bbn.stage`` = ``classifier``; evaluate logs into it),
otherwise a run that is not one (the training run, or evaluate's own run). So the training run of
CE + cRT never counts as a CE run, BBN's two inits never share a row, and runs of another budget
(``train.epochs``) are left out. A row and seed finished more than once counts once (the newest).

Published numbers: top-1 accuracy (%) on CIFAR-10-LT IR100. BBN, CE, LDAM-DRW, Mixup, Manifold
Mixup and Manifold Mixup (two samplers): Zhou et al. 2020 (BBN), Table 1 (errors 20.18, 29.64,
22.97, 26.94, 27.04, 26.90); BBN's is confirmed by Megvii-Nanjing/BBN issue #9, LDAM-DRW's by the
LDAM paper's 22.97 % error; CE's is not re-checked against the PDF. MiSLAS: 82.5, the released
CIFAR-10-LT IF=100 stage-2 model (dvlab-research/MiSLAS README, "Results and Models"). CE + cRT:
none verified for CIFAR-10-LT ("—"). BBN with fan-out init: the published network is fan-in ("—").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
from scipy.stats import ttest_ind_from_stats

from bbn.cli.report import summarise
from bbn.errors import BBNError
from stages.recipe import load

SIGNIFICANCE = 0.05  # two-sided, Welch's t-test over the seeds of two rows
SCHEDULES = ("- The rows keep their sources' lr-step positions (column *lr steps*): BBN and the mixup rows BBN's, "
             "the others LDAM-DRW's; at 12 epochs this alone moves BBN by several points "
             "(`bbn_lr_steps.md`), so a comparison across the two groups is one of recipes, not of methods "
             "at one schedule.")
METRICS = ("test_top1_acc", "test_many_acc", "test_medium_acc", "test_few_acc")
BBN_T1 = "Zhou et al. 2020 (BBN) Table 1"


@dataclass(frozen=True)
class Row:
    """One table row: ``recipe`` run with ``init`` (``model.init``; '' = the recipe's own), with the
    ``--seeds`` seeds when ``many_seeds`` else the ``--single-seeds``; ``paper``: published top-1 (%)."""

    name: str
    recipe: str
    many_seeds: bool
    paper: float | None
    source: str
    init: str = ""

    @property
    def sets(self) -> list[str]:
        return [f"model.init={self.init}"] if self.init else []

    @cached_property
    def key(self) -> tuple[str, str]:
        """(recipe, model.init) as the runs log them."""
        return self.recipe, self.init or str(load(self.recipe)["model"]["init"])

    @cached_property
    def classifier(self) -> bool:
        """Whether the recipe runs the classifier stage (its evaluation is in the classifier run)."""
        return load(self.recipe).get("classifier", {}).get("method", "none") != "none"


ROWS = (
    Row("BBN (official init)", "cifar10_lt_bbn", True, 79.82, BBN_T1),
    Row("BBN (fan-out init)", "cifar10_lt_bbn", True, None, "— (the published network is fan-in)", "fan_out"),
    Row("CE", "cifar10_lt_ce", True, 70.36, BBN_T1 + " (from Cao et al. 2019)"),
    Row("CE + cRT", "cifar10_lt_ce_crt", True, None, "— (none verified for CIFAR-10-LT)"),
    Row("MiSLAS", "cifar10_lt_mislas", True, 82.5, "Zhong et al. 2021, released model (MiSLAS README)"),
    Row("LDAM-DRW", "cifar10_lt_ldam_drw", False, 77.03, BBN_T1 + " (Cao et al. 2019)"),
    Row("Mixup", "cifar10_lt_mixup", False, 73.06, BBN_T1 + " (error 26.94)"),
    Row("Manifold Mixup", "cifar10_lt_manifold_mixup", False, 72.96, BBN_T1 + " (error 27.04)"),
    Row("Manifold Mixup (two samplers)", "cifar10_lt_manifold_mixup_two_samplers", False, 73.10,
        BBN_T1 + " (error 26.90)"),
)
BY_NAME = {r.name: r for r in ROWS}


def _col(runs: pd.DataFrame, name: str, default: str) -> pd.Series:
    return runs[name].fillna(default).astype(str) if name in runs else pd.Series(default, index=runs.index)


def evaluated(runs: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """The FINISHED runs at ``epochs`` that hold a row's evaluation (see the module docstring), one
    per row and seed (the newest), with the row's name in column ``params.row``.

    ``runs``: one run per row as ``bbn.tracking.runs.load_runs`` returns them, with ``tags.bbn.stage``.
    """
    runs = runs[runs["status"] == "FINISHED"]
    names = pd.Series(list(zip(_col(runs, "params.recipe", ""), _col(runs, "params.model.init", ""))),
                      index=runs.index, dtype=object).map({r.key: r.name for r in ROWS})
    uses = names.map(lambda n: BY_NAME[n].classifier if isinstance(n, str) else False).astype(bool)
    in_classifier_run = _col(runs, "tags.bbn.stage", "") == "classifier"
    scored = runs["metrics.test_top1_acc"].notna() if "metrics.test_top1_acc" in runs else False
    keep = names.notna() & (uses == in_classifier_run) & scored & (_col(runs, "params.train.epochs", "") == str(epochs))
    out = runs[keep].assign(**{"params.row": names[keep]})
    if "start_time" in out:
        out = out.sort_values("start_time", ascending=False)
    return out.drop_duplicates(["params.row", "params.train.seed"], keep="first")


def _pm(row: pd.Series | None, metric: str) -> str:
    if row is None or row[f"{metric}_n"] == 0:
        return "–"
    mean, std = 100 * row[f"{metric}_mean"], 100 * row[f"{metric}_std"]
    return f"{mean:.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")


def _seeds(runs: pd.DataFrame, name: str) -> str:
    seeds = sorted(runs.loc[runs["params.row"] == name, "params.train.seed"].astype(int))
    return f"{len(seeds)} ({', '.join(map(str, seeds))})" if seeds else "0 (not run yet)"


def _param(runs: pd.DataFrame, row: Row, name: str) -> str:
    """The values of param ``name`` over the row's runs ('–' without runs)."""
    return ", ".join(sorted(set(_col(runs[runs["params.row"] == row.name], name, "?")))) or "–"


def _classifier_epochs(runs: pd.DataFrame, row: Row) -> str:
    return _param(runs, row, "params.classifier.epochs") if row.classifier else "–"


def rows_markdown(runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The table: every row of ``ROWS`` (in order; a row without runs says so) beside its published number."""
    by_name = {r["row"]: r for _, r in summary.iterrows()}
    lines = ["| method | recipe | model.init | lr steps | classifier epochs | seeds (n) | top-1 | many | medium "
             "| few | published top-1 | source |", "|" + "---|" * 12]
    for row in ROWS:
        got = by_name.get(row.name)
        paper = "—" if row.paper is None else f"{row.paper:.2f}"
        cells = [row.name, f"`{row.recipe}`", row.key[1], _param(runs, row, "params.train.lr_steps"),
                 _classifier_epochs(runs, row), _seeds(runs, row.name),
                 *(_pm(got, m) for m in METRICS), paper, row.source]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus(summary: pd.DataFrame, a: str, b: str) -> tuple[float, float] | None:
    """(top-1 mean of a − b, two-sided p of Welch's t-test on the two rows' seeds, from their means,
    sample stds and seed counts; 0 or 1 when both stds are 0); None unless both rows have at least
    two seeds (one seed has no spread to judge against)."""
    rows = summary.set_index("row")
    if not {a, b} <= set(rows.index) or min(rows.loc[a, "n"], rows.loc[b, "n"]) < 2:
        return None
    (ma, sa, na), (mb, sb, nb) = (rows.loc[r, ["test_top1_acc_mean", "test_top1_acc_std", "n"]] for r in (a, b))
    if sa == 0 and sb == 0:
        return ma - mb, float(ma == mb)
    return ma - mb, float(ttest_ind_from_stats(ma, sa, na, mb, sb, nb, equal_var=False).pvalue)


def verdicts(summary: pd.DataFrame) -> str:
    """One line per comparison the table is for: the init, BBN vs CE, cRT vs CE, MiSLAS vs BBN."""
    lines = []
    for a, b, what in (("BBN (official init)", "BBN (fan-out init)", "the init"),
                       ("BBN (official init)", "CE", "BBN vs CE"), ("CE + cRT", "CE", "cRT vs CE"),
                       ("MiSLAS", "BBN (official init)", "MiSLAS vs BBN")):
        cmp = versus(summary, a, b)
        if cmp is None:
            lines.append(f"- {what}: not decidable yet ({a} and {b} need two seeds or more each).")
            continue
        gap, p = cmp
        moved = (f"beyond the seed spread (p < {SIGNIFICANCE})" if p < SIGNIFICANCE else
                 f"NOT beyond the seed spread (p ≥ {SIGNIFICANCE}: the seeds cannot tell them apart)")
        lines.append(f"- {what}: {a} − {b} top-1 {100 * gap:+.2f} points, Welch's t-test over the seeds "
                     f"p = {p:.3g}: {moved}.")
    return "\n".join(lines + [SCHEDULES])


def table(runs: pd.DataFrame, epochs: int) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """(markdown table and verdicts, summary per row in raw units, the runs used); BBNError when no
    run of any row finished at ``epochs``."""
    used = evaluated(runs, epochs)
    if used.empty:
        raise BBNError(f"no finished run of the table's rows at {epochs} epoch(s) (--epochs)")
    summary = summarise(used, ["row"], list(METRICS))
    order = {r.name: i for i, r in enumerate(ROWS)}
    summary = summary.sort_values("row", key=lambda s: s.map(order)).reset_index(drop=True)
    return rows_markdown(used, summary) + "\n\n" + verdicts(summary) + "\n", summary, used


def _values(runs: pd.DataFrame, name: str) -> str:
    return ", ".join(sorted(set(_col(runs, name, "?")))) or "?"


def header(used: pd.DataFrame, summary: pd.DataFrame, epochs: int, machine: str, devices: str) -> str:
    """What the numbers are: budget, split, seeds, machine, the published numbers' sources."""
    sizes = "/".join(str(summary[f"test_{g}_acc_classes"].iloc[0] or "?") for g in ("many", "medium", "few"))
    return (
        f"**Budget.** {epochs} training epoch(s) per run (200 = the published recipes), every recipe's "
        f"schedule shape scaled to it: lr steps, DRW/DRS start and warm-up at the same fractions of "
        f"training, T_max = {epochs}; images at {_values(used, 'params.train.image_size')} px, batch "
        f"{_values(used, 'params.train.batch_size')}. The classifier stage (CE + cRT, MiSLAS stage 2) runs "
        f"max(1, round(10 × {epochs} / 200)) = {max(1, round(10 * epochs / 200))} epoch(s) (the recipes' 10 at "
        "the same fraction, at least one); one of its epochs is N class-balanced draws for the N training "
        "images, at the cosine's first lr when there is one epoch (MiSLAS's per-epoch cosine).\n\n"
        f"**Split.** `{_values(used, 'params.data.name')}` at imbalance ratio "
        f"{_values(used, 'params.data.imbalance_ratio')} (data.seed {_values(used, 'params.data.seed')}): the "
        "long-tailed subsample of the source's training set (CIFAR-10-LT: of the CIFAR-10 training set); val = "
        f"a stratified hold-out of {_values(used, 'params.split.val_fraction')} of that training pool (kind: "
        f"{_values(used, 'tags.val_split')}), never used for selection; the last epoch is reported. Test = "
        f"the source's test set (CIFAR-10-LT: the CIFAR-10 test set, 10,000 images, balanced); many / medium "
        f"/ few-shot = {sizes} classes. Top-1 and shot-group accuracy in %, mean ± sample std over the "
        "seeds of a row (n and the seeds in the seeds column; a row with one seed has no std). A row and "
        "seed finished more than once counts once (the newest run).\n\n"
        f"**Machine.** {machine}; training device(s): {devices}.\n\n"
        "**Published numbers** (top-1 accuracy, %, CIFAR-10-LT IR100, full 200-epoch recipes): the "
        "source column; errors are converted as 100 − error. At this budget every row is far below its "
        "published level: compare the rows with each other, not with the paper.\n"
    )
