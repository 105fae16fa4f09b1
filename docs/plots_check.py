"""Check that ``dvc plots show`` draws every figure once and without internet, in headless Chromium.

    python docs/plots_check.py [--out dvc_plots] [--screenshot docs/dvc-plots.png]

Runs ``dvc plots show -o OUT`` in the current project, opens ``OUT/index.html`` in headless Chromium
with every host name unresolvable (``--host-resolver-rules``: a CDN script could not load), lets
the page's scripts run, and reads the resulting DOM: each top-level plot of ``dvc.yaml`` must be
drawn exactly once (vega-embed's ``marks`` canvas in its div) and each PNG shown once. Exits 1
naming what is missing or doubled. Needs ``chromium`` (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--allow-file-access-from-files", "--virtual-time-budget=15000"]


def expected(dvc_yaml: Path) -> tuple[list[str], list[str]]:
    """(ids of the top-level data plots, PNG paths declared anywhere) in ``dvc.yaml``."""
    spec = yaml.safe_load(dvc_yaml.read_text())
    charts = [next(iter(p)) for p in spec.get("plots", []) if isinstance(p, dict)]
    pngs = [p for p in spec.get("plots", []) if isinstance(p, str) and p.endswith(".png")]
    for stage in spec.get("stages", {}).values():
        pngs += [next(iter(p)) if isinstance(p, dict) else p for p in stage.get("plots", [])
                 if str(next(iter(p)) if isinstance(p, dict) else p).endswith(".png")]
    return charts, pngs


def problems(dom: str, charts: list[str], pngs: list[str]) -> list[str]:
    """What the rendered page lacks or shows twice."""
    out = []
    for chart in charts:
        divs = len(re.findall(rf'<div id="{re.escape(chart)}"', dom))
        drawn = re.search(rf'<div id="{re.escape(chart)}"[^>]*>.*?class="marks"', dom, re.S)
        if divs != 1 or not drawn:
            out.append(f"plot {chart}: {divs} div(s), {'drawn' if drawn else 'not drawn'}")
    images = re.findall(r'<img src="static/([^"]+)"', dom)
    for png in pngs:
        n = sum(img.endswith(png.replace("/", "_")) for img in images)
        if n != 1:
            out.append(f"{png}: shown {n} times")
    if len(images) != len(pngs):
        out.append(f"{len(images)} images on the page, {len(pngs)} PNGs declared")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="dvc_plots")
    ap.add_argument("--screenshot", help="also save a full-page screenshot (PNG) here")
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        sys.exit("plots_check: no chromium on PATH (apt-get install chromium)")
    subprocess.run(["dvc", "plots", "show", "-o", args.out], check=True, capture_output=True)
    page = (Path(args.out) / "index.html").resolve()
    dom = subprocess.run([browser, *OFFLINE, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    charts, pngs = expected(Path("dvc.yaml"))
    found = problems(dom, charts, pngs)
    if args.screenshot:
        subprocess.run([browser, *OFFLINE, "--window-size=1400,4500", "--hide-scrollbars",
                        f"--screenshot={Path(args.screenshot).resolve()}", page.as_uri()],
                       capture_output=True, timeout=120, check=True)
    for line in found:
        print(f"plots_check: {line}")
    print(f"plots_check: {len(charts)} interactive plots and {len(pngs)} PNGs, each once, drawn offline"
          if not found else f"plots_check: {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
