"""The scale benchmark (bench/inat_synth.py, bench/scale.py) and the loader row (bench/loader.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import urllib.request

import pytest
import yaml

from bbn.data.inat import find_json, load_categories, load_images
from bench import inat_synth
from bench.serve import serve
from tests.helpers import ROOT


def test_profile_matches_the_published_shape():
    counts = inat_synth.full_profile()
    assert len(counts) == 1010 and counts.sum() == 265_213
    assert counts.max() == 500 and counts.min() == 16 and (counts[:-1] >= counts[1:]).all()
    plan = inat_synth.plan(inat_synth.Spec(1 / 40))
    assert len(plan.train) == sum(max(1, round(n / 40)) for n in counts)
    assert len(plan.val) == 3 * round(1010 / 40) and plan.test == round(35_350 / 40)
    assert set(plan.train) == set(range(1010))  # every class keeps at least one training image


def test_synthetic_archives_have_the_official_layout(tmp_path):
    manifest = inat_synth.build(tmp_path / "mirror", inat_synth.Spec(1 / 100, classes=12, px=64))
    train = sum(max(1, round(n / 100)) for n in inat_synth.full_profile(12))
    assert manifest["counts"] == {"train": train, "val": 3, "test": 354}
    assert inat_synth.build(tmp_path / "mirror", inat_synth.Spec(1 / 100, classes=12, px=64)) == manifest  # reused
    raw = tmp_path / "raw"
    for name in inat_synth.ARCHIVES:
        with tarfile.open(tmp_path / "mirror" / name) as tar:
            tar.extractall(raw, filter="data")
    images = load_images(find_json(raw, "train"))
    assert len(images) == train and images["category_id"].nunique() == 12
    assert all(re.fullmatch(r".*/train_val2019/[A-Z][a-z]+/\d+/[0-9a-f]{32}\.jpg", p) for p in images["path"])
    assert len(load_images(find_json(raw, "val"))) == 3
    assert len(load_images(find_json(raw, "test"), labelled=False)) == 354
    cats = load_categories(find_json(raw, "train"))
    assert {"kingdom", "phylum", "class", "order", "family", "genus"} <= set(cats.columns)
    with serve(tmp_path / "mirror", lifetime=30) as url:
        body = urllib.request.urlopen(url + "val2019.json.tar.gz").read()
        ranged = urllib.request.urlopen(urllib.request.Request(url + "val2019.json.tar.gz", headers={"Range": "bytes=10-"}))
        assert ranged.status == 206 and ranged.read() == body[10:]
    assert body == (tmp_path / "mirror" / "val2019.json.tar.gz").read_bytes()


@pytest.mark.pipeline  # in-process, but seconds of DataLoader workers: kept out of the fast tier
def test_loader_row_smoke(capsys):
    from bench import loader

    loader.main(["--smoke"])
    out = capsys.readouterr().out
    rates = [float(x.replace(",", "")) for x in re.findall(r"(\d[\d,]*) img/s  \[", out)]
    assert len(rates) == 2 and all(r > 0 for r in rates)
    ratio = float(re.search(r"2 workers / 1 worker: ([\d.]+)x", out).group(1))
    assert ratio == pytest.approx(rates[1] / rates[0], abs=0.01)


@pytest.mark.pipeline
def test_scale_smoke_end_to_end(tmp_path):
    facts = tmp_path / "facts.json"
    proc = subprocess.run([sys.executable, "bench/scale.py", "--smoke", "--work", str(tmp_path / "w"), "--json", str(facts)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(facts.read_text())
    small, large = report["results"]
    stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert sum(small["counts"].values()) < sum(large["counts"].values())
    for result in (small, large):
        assert [t["what"] for t in result["timings"]] == [*stages, "dvc status (no-op)", "dvc repro (no-op)"]
        for t in result["timings"]:
            assert t["wall_s"] > 0 and t["cpu_s"] > 0 and t["rss_mib"] > 0 and len(t["load"]) == 2, t["what"]
            if t["what"] in stages:
                assert t["ran"] == [t["what"]]
            else:  # a no-op: at most the always-run download stage (it links data/raw to the shared tree)
                assert set(t["ran"]) <= {"download"}, t
        by = {t["what"]: t for t in result["timings"]}
        assert by["download"]["bytes"] >= result["archive_bytes"]  # the archives, then what they hold
        assert by["prepare"]["files"] >= sum(result["counts"].values())  # a prepared copy per image
        assert result["disk"]["data/downloads"] > 0 and result["disk"]["data/prepared"] > 0
    (exp,) = small["queue"]["experiments"]
    assert "train" in exp["ran_queue_logs"] and exp["ran"] == exp["ran_queue_logs"]
    assert 0 < exp["to_train_stage_s"] < exp["to_mlflow_run_s"] < exp["total_s"]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in table}
    for name in [s for s in stages if s != "train"] + ["dvc status (no-op)"]:
        cells = rows[name].strip("| ").split(" | ")
        per_image = [float(c) for c in cells[2:6]]
        assert all(v > 0 for v in per_image), rows[name]
        assert float(cells[6]) == pytest.approx(per_image[3] / per_image[1], rel=0.02), rows[name]  # growth
    assert "GPU-bound" in next(line for name, line in rows.items() if name.startswith("train"))
