"""Compare tracked runs: ``bbn-report [--group-by train.method train.tmax] [--last 20]``.

Reads the MLflow store that training logs to, keeps FINISHED runs that have at least one of the
metrics, groups them by params (by default every param that differs between them, so seeds become
replicates) and writes ``report.md`` (mean ± sample std per group), ``report.png`` (one bar panel
per metric) and ``report.csv`` (the same numbers in raw units, machine-readable). A ``test_`` metric
falls back to its ``val_`` twin for runs without test labels (iNaturalist); the table says so,
with the kind of val split the run was scored on (tag ``val_split``: ``official``, or
``holdout-longtailed`` when it is a hold-out of a long-tailed training pool, not comparable with
published numbers). Each many/medium/few-shot accuracy carries the size of its shot group (the
``<group>_classes`` metric of the evaluation); a group without classes is shown as empty, never
silently dropped.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bbn.errors import (
    BBNError,  # noqa: E402
    run,  # noqa: E402
)
from bbn.files import atomic_path, sqlite_uri, write_text  # noqa: E402
from bbn.tracking.runs import load_runs  # noqa: E402

METRICS = ("test_top1_error", "test_many_acc", "test_medium_acc", "test_few_acc")
REPLICATE_PARAMS = {"train.seed", "data.seed", "classifier.seed"}  # a repeat, not a new experiment


def fallback(metric: str) -> str | None:
    """The val_ twin of a test_ metric: the best number a run without test labels has."""
    return "val_" + metric.removeprefix("test_") if metric.startswith("test_") else None


def group_size_metric(metric: str) -> str | None:
    """``many_classes`` for ``test_many_acc`` (and the medium, few and posthoc ones); None otherwise."""
    for g in ("many", "medium", "few"):
        if metric.endswith(f"_{g}_acc"):
            return f"{g}_classes"
    return None


def group_sizes(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Per run: the size of ``metric``'s shot group (NaN: not a group metric, or not logged)."""
    size = group_size_metric(metric)
    column = f"metrics.{size}" if size else None
    return runs[column].astype(float) if column in runs else pd.Series(float("nan"), index=runs.index)


def is_empty_group(runs: pd.DataFrame, metric: str) -> bool:
    """Whether ``metric`` is a shot-group accuracy whose group has no class in any of ``runs``."""
    sizes = group_sizes(runs, metric).dropna()
    return len(sizes) > 0 and bool((sizes == 0).all())


def is_percent(metric: str) -> bool:
    return metric.endswith(("_acc", "_error"))


def resolve(runs: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    """Per run: the metric's value (test_, else val_) and the name of the metric it came from."""
    nan = pd.Series(float("nan"), index=runs.index)
    value = runs.get(f"metrics.{metric}", nan).astype(float)
    source = pd.Series(metric, index=runs.index).where(value.notna())
    alt = fallback(metric)
    if alt and f"metrics.{alt}" in runs:
        use = value.isna() & runs[f"metrics.{alt}"].notna()
        value, source = value.where(~use, runs[f"metrics.{alt}"]), source.where(~use, alt)
    return value, source


def varying_params(runs: pd.DataFrame) -> list[str]:
    """Params whose value differs between runs (missing counts as a value), seeds and tracking.* left out."""
    names = [c.removeprefix("params.") for c in runs.columns if c.startswith("params.")]
    return sorted(n for n in names if n not in REPLICATE_PARAMS and not n.startswith("tracking.")
                  and runs[f"params.{n}"].fillna("\0").nunique() > 1)


def _sort_key(value: object) -> tuple:
    """Numbers in numeric order (60 before 180), then text."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def summarise(runs: pd.DataFrame, group_by: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per group: the group-by values, ``n`` runs, and per metric ``<m>_mean``, ``<m>_std``
    (sample std, NaN for one run), ``<m>_n``, ``<m>_source`` (metric names used, '+'-joined) and
    ``<m>_classes`` (shot-group sizes of a many/medium/few metric, '/'-joined; '' otherwise).

    ``runs`` has one row per run with ``params.<name>`` and ``metrics.<name>`` columns (as
    ``mlflow.search_runs`` names them); values stay in raw units (fractions, not percent).
    """
    keys = runs[[f"params.{g}" for g in group_by]].fillna("(unset)").astype(str)
    keys.columns = list(group_by)
    resolved = {m: resolve(runs, m) for m in metrics}
    groups = ((k, g.index) for k, g in keys.groupby(list(group_by), sort=False)) if group_by else [((), runs.index)]
    rows = []
    for key, idx in groups:  # iterating a list-groupby gives tuple keys, also for one column
        row = dict(zip(group_by, key), n=len(idx))
        for m, (value, source) in resolved.items():
            v = value.loc[idx].dropna()
            sizes = sorted(group_sizes(runs.loc[idx], m).dropna().astype(int).unique())
            row |= {f"{m}_mean": v.mean(), f"{m}_std": v.std(ddof=1), f"{m}_n": len(v),
                    f"{m}_source": "+".join(sorted(source.loc[idx].dropna().unique())),
                    f"{m}_classes": "/".join(map(str, sizes))}
        kinds = runs["tags.val_split"].loc[idx].dropna() if "tags.val_split" in runs else pd.Series([], dtype=str)
        row["val_split"] = "+".join(sorted(kinds.unique()))
        rows.append(row)
    rows.sort(key=lambda r: [_sort_key(r[g]) for g in group_by])
    return pd.DataFrame(rows, columns=[*group_by, "n"] + [f"{m}_{s}" for m in metrics
                                                          for s in ("mean", "std", "n", "source", "classes")]
                        + ["val_split"])


def select(runs: pd.DataFrame, metrics: list[str], explicit: bool, last: int | None) -> tuple[pd.DataFrame, list[str]]:
    """FINISHED runs with at least one metric (the ``last`` newest); metrics no run has are an error
    when asked for by name, and dropped from the defaults (``main`` says which) — except the
    accuracy of a shot group that is empty in every run, which stays and is shown as empty."""
    runs = runs[runs["status"] == "FINISHED"]
    if runs.empty:
        raise BBNError("no FINISHED runs match (check --experiment and --filter)")
    missing = [m for m in metrics if resolve(runs, m)[0].isna().all() and not is_empty_group(runs, m)]
    if missing and explicit:
        alt = f" or {fallback(missing[0])}" if fallback(missing[0]) else ""
        raise BBNError(f"metric {missing[0]!r}{alt} is logged by none of the {len(runs)} finished runs")
    if len(missing) == len(metrics):
        raise BBNError(f"no FINISHED run has any of the metrics {', '.join(metrics)} (nor their val_ twins)")
    metrics = [m for m in metrics if m not in missing]
    runs = runs[pd.concat([resolve(runs, m)[0].notna() for m in metrics], axis=1).any(axis=1)]
    return (runs.head(last) if last else runs), metrics


def check_group_by(runs: pd.DataFrame, group_by: list[str]) -> None:
    known = [c.removeprefix("params.") for c in runs.columns if c.startswith("params.")]
    for g in group_by:
        if g not in known:
            close = difflib.get_close_matches(g, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise BBNError(f"unknown --group-by param {g!r}: no selected run logged it{hint}")


def cell(row: pd.Series, metric: str) -> str:
    """``mean ± std`` in percent for accuracies/errors, marked when the val_ fallback was used, with
    the shot group's size for a many/medium/few accuracy (``empty`` for a group without classes)."""
    mean, std, n = row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"]
    classes = row.get(f"{metric}_classes", "")
    if n == 0:
        return "empty group (0 classes)" if classes == "0" else "–"
    scale, fmt = (100.0, "{:.2f}") if is_percent(metric) else (1.0, "{:.4g}")
    text = fmt.format(mean * scale) + (f" ± {fmt.format(std * scale)}" if n > 1 else "")
    source = row[f"{metric}_source"]
    if source != metric:
        kind = f": {row['val_split']}" if row.get("val_split") else ""
        text += f" (val{kind})" if source == fallback(metric) else f" (test+val{kind})"  # mixed within the group
    if classes:
        text += f" ({classes} {'class' if set(str(classes).split('/')) == {'1'} else 'classes'})"
    return text + (f" (n={n})" if n != row["n"] else "")


def markdown(summary: pd.DataFrame, group_by: list[str], metrics: list[str], header: str,
             dropped: list[str] = ()) -> str:
    heads = [*group_by, "n", *(f"{m} (%)" if is_percent(m) else m for m in metrics)]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for _, row in summary.iterrows():
        values = [str(row[g]).replace("|", "\\|") for g in group_by] + [str(row["n"])]
        lines.append("| " + " | ".join(values + [cell(row, m) for m in metrics]) + " |")
    note = ("Mean ± sample std over the n runs of a group; accuracies and errors in %. "
            "(val): the run has no test labels, its val_ metric is shown; (val: holdout-longtailed): "
            "that val split is a hold-out of the long-tailed training pool, not a balanced set. "
            "Many/medium/few-shot: classes grouped by their training images after the val hold-out "
            "(`stats.groups`); (k classes): the size of that shot group; an empty group has no accuracy.")
    if dropped:
        note += f"\nNot shown (logged by none of these runs): {', '.join(dropped)}."
    return f"{header}\n\n" + "\n".join(lines) + f"\n\n{note}\n"


def leakage_note(runs: pd.DataFrame) -> str:
    """A warning naming the runs whose test set shares images with their training images (metric
    ``test_images_in_train`` > 0: their test numbers are partly measured on training images), or ''."""
    if "metrics.test_images_in_train" not in runs:
        return ""
    counts = pd.to_numeric(runs["metrics.test_images_in_train"], errors="coerce")
    leaky = runs.loc[counts > 0, "run_id"].tolist()
    if not leaky:
        return ""
    return (f"\n**Warning:** {_count(len(leaky), 'run')} ({', '.join(leaky[:3])}{', ...' if len(leaky) > 3 else ''}) "
            f"were tested on images with a byte-identical copy among their training images (up to "
            f"{int(counts.max())}: metric `test_images_in_train`, listed in `data/stats/duplicates.csv`).\n")


def label(row: pd.Series, group_by: list[str]) -> str:
    short = [g.rsplit(".", 1)[-1] for g in group_by]
    names = short if len(set(short)) == len(short) else group_by
    return " ".join(f"{k}={row[g]}" for k, g in zip(names, group_by)) or "all runs"


def plot(summary: pd.DataFrame, group_by: list[str], metrics: list[str], target: Path) -> None:
    """One horizontal bar panel per metric, one bar per group, sample-std error bars."""
    labels = [f"{label(row, group_by)} (n={row['n']})" for _, row in summary.iterrows()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 2, 0.45 * len(labels) + 1.4),
                             sharey=True, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        scale = 100.0 if is_percent(m) else 1.0
        val = (summary[f"{m}_source"] != m) & (summary[f"{m}_n"] > 0)  # hatched: val_ fallback used
        ax.barh(range(len(labels)), summary[f"{m}_mean"] * scale, xerr=summary[f"{m}_std"].fillna(0) * scale,
                color="tab:blue", hatch=["//" if v else "" for v in val], edgecolor="white", capsize=3)
        empty = ", empty group" if (summary[f"{m}_classes"] == "0").all() else ""
        ax.set_title(m + (" (%)" if scale == 100 else "") + (", hatched: val_" if val.any() else "") + empty,
                     fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ends = ((summary[f"{m}_mean"] + summary[f"{m}_std"].fillna(0)) * scale).dropna()
        top = float(ends.max()) if len(ends) else 0.0  # errors, accuracies, ECE, NLL: never below 0
        ax.set_xlim(0, top * 1.08 if top > 0 else scale)  # an all-zero (or empty) panel: 0..100 %, no negative ticks
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0][0].invert_yaxis()  # first group on top, as in the table
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bbn-report", description=__doc__.split("\n")[0])
    ap.add_argument("--tracking-uri", default=None, help="MLflow store (default: <project root>/mlflow.db)")
    ap.add_argument("--experiment", default="bbn")
    ap.add_argument("--filter", default="", help="MLflow search filter, e.g. \"params.`train.method` = 'bbn'\"")
    ap.add_argument("--group-by", nargs="*", default=None, metavar="PARAM",
                    help="dotted param names (default: every param that varies, seeds and tracking.* left out)")
    ap.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                    help=f"default: {' '.join(METRICS)} (test_ falls back to val_)")
    ap.add_argument("--out", default="reports", help="folder for report.md/.png/.csv (default reports/)")
    ap.add_argument("--last", type=int, default=None, metavar="N", help="only the N most recent usable runs")
    args = ap.parse_args(argv)
    if args.last is not None and args.last < 1:
        ap.error("--last must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    uri = args.tracking_uri or sqlite_uri(Path.cwd() / "mlflow.db")
    asked = list(args.metrics or METRICS)
    runs, metrics = select(load_runs(uri, args.experiment, args.filter), asked, args.metrics is not None, args.last)
    runs = runs.dropna(axis=1, how="all")  # params only the dropped runs had are not "varying"
    group_by = varying_params(runs) if args.group_by is None else list(args.group_by)
    check_group_by(runs, group_by)
    summary = summarise(runs, group_by, metrics)
    header = (f"# Run comparison\n\nStore `{uri}`, experiment `{args.experiment}`"
              + (f", filter `{args.filter}`" if args.filter else "")
              + f": {_count(len(runs), 'run')} in {_count(len(summary), 'group')}"
              + f" by {', '.join(group_by) or '(nothing)'}; "
              + f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.")
    text = markdown(summary, group_by, metrics, header, [m for m in asked if m not in metrics])
    text += leakage_note(runs)
    out = Path(args.out)
    write_text(out / "report.md", text)
    with atomic_path(out / "report.csv", suffix=".csv") as tmp:
        summary.to_csv(tmp, index=False)
    plot(summary, group_by, metrics, out / "report.png")
    print(text, end="")
    print(f"\nwritten: {out / 'report.md'}, {out / 'report.png'}, {out / 'report.csv'}")


def cli() -> None:
    run(lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
