"""Write ``.dvc/plots/offline.html``: the HTML template ``dvc plots show`` uses (``plots.html_template``
in ``.dvc/config``), with the Vega scripts inlined so the interactive plots render without internet.

DVC's own page loads vega, vega-lite and vega-embed from a CDN (dvc_render's ``VegaRenderer.SCRIPTS``);
with no network the seven interactive plots stay blank. A template without the ``{scripts}``
placeholder gets no CDN tags; this one carries the same versions DVC asks the CDN for, taken from
their npm packages (BSD-3-Clause, whose notice is kept in the file). The template is committed, so
a clone needs nothing; this script only says where it came from and regenerates it (needs ``npm``):

    python docs/offline_plots.py            # then: dvc plots show
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".dvc" / "plots" / "offline.html"
# the versions dvc_render's VegaRenderer.SCRIPTS loads from cdn.jsdelivr.net
PACKAGES = {"vega": "5.20.2", "vega-lite": "5.2.0", "vega-embed": "6.18.2"}
PAGE = """<!DOCTYPE html>
<!-- dvc plots show template (.dvc/config plots.html_template), written by docs/offline_plots.py:
     {packages} inlined from their npm packages (BSD-3-Clause, Copyright (c) the University of
     Washington Interactive Data Lab), so the page works without internet. -->
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{inline}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def script(folder: Path, name: str, version: str) -> str:
    """The minified build of npm package ``name``@``version`` (fetched with ``npm pack`` into ``folder``)."""
    subprocess.run(["npm", "pack", "--silent", f"{name}@{version}"], cwd=folder, check=True, capture_output=True)
    with tarfile.open(folder / f"{name}-{version}.tgz") as tar:
        code = tar.extractfile(f"package/build/{name}.min.js").read().decode()
    if "</script" in code or "{plot_divs}" in code or "{scripts}" in code:
        raise SystemExit(f"{name}: the build contains text that would break the template")
    return f"    <script>/* {name} {version} */\n{code}\n    </script>"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inline = "\n".join(script(Path(tmp), name, version) for name, version in PACKAGES.items())
    packages = ", ".join(f"{n} {v}" for n, v in PACKAGES.items())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(PAGE.format(packages=packages, inline=inline), encoding="utf8")
    print(f"{OUT.relative_to(ROOT)}: {OUT.stat().st_size / 2**10:.0f} KiB ({packages})")


if __name__ == "__main__":
    main()
