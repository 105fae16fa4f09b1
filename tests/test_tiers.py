"""The test tiers' run-time check (tests/tiers.py): which commands belong to the pipeline tier, and an
unmarked test that starts one fails, shown on purpose in a pytest run of its own."""

from __future__ import annotations

import itertools
import re
import sys

import pytest

from tests.helpers import ROOT
from tests.tiers import heavy_command

PY = sys.executable


@pytest.mark.parametrize("args, shell, what", [
    (["dvc", "repro", "train"], False, "dvc"),
    (["/usr/local/bin/dvc", "exp", "run", "--temp"], False, "dvc"),
    ([PY, "-m", "stages.train"], False, "python -m stages.train"),
    (["python3", "-u", "-m", "stages.download"], False, "python -m stages.download"),
    ([PY, "-m", "dvc", "repro"], False, "python -m dvc"),
    ([PY, "stages/train.py"], False, "stages/train.py"),
    (["torchrun", "--nproc-per-node", "2", "-m", "stages.train"], False, "torchrun"),
    ([PY, "-m", "torch.distributed.run", "--nproc-per-node", "2", "x.py"], False, "torchrun"),
    (["mlflow", "server", "--port", "5000"], False, "mlflow server"),
    ([PY, "-m", "mlflow", "ui"], False, "mlflow ui"),
    ("cd repo && DVC_NO_ANALYTICS=1 dvc repro", True, "dvc"),
    (["bash", "-c", "git add -A; env OMP_NUM_THREADS=1 torchrun t.py"], False, "torchrun"),
    ("echo ok|dvc status", True, "dvc"),
    ("timeout 600 nice -n 5 dvc repro", True, "dvc"),
    (["env", "-i", "OMP_NUM_THREADS=1", "torchrun", "t.py"], False, "torchrun"),
    (["bash", "bench/gpu.sh", "--device", "cpu"], False, "bench/gpu.sh"),
    ([PY, "bench/run.py", "--smoke"], False, "bench/run.py"),
    ([PY, "-m", "bench.run"], False, "python -m bench.run"),
])
def test_pipeline_commands_are_recognised(args, shell, what):
    assert heavy_command(args, shell) == what


@pytest.mark.parametrize("args, shell", [
    (["git", "commit", "-qm", "dvc repro"], False),
    ([PY, "-m", "bbn.cli.predict", "images/"], False),
    ([PY, "-m", "pytest", "-m", "pipeline"], False),
    ([PY, "-c", "import stages.params"], False),
    (["mlflow", "--version"], False),
    (["bash", "scripts/setup.sh"], False),
    ([PY, "-c", "import bench.common"], False),
    ("dvc repro", False),  # no shell: a program named 'dvc repro', which does not exist
    ("echo 'dvc repro'", True),
    (["dvcx"], False),
])
def test_other_commands_are_not(args, shell):
    assert heavy_command(args, shell) is None


def test_an_unmarked_test_that_starts_dvc_or_a_stage_fails(pytester, monkeypatch):
    """In a pytest run with this plugin: the unmarked test that starts dvc fails before dvc starts,
    also when it swallows the failure, and so does an unmarked fixture that starts a stage; the marked
    test's stage process really runs."""
    pytester.makepyfile(test_tiny='''
        import subprocess, sys
        import pytest

        def test_unmarked_dvc():
            subprocess.run(["dvc", "--version"])

        def test_unmarked_swallowed():
            try:
                subprocess.run("cd . && dvc status", shell=True)
            except BaseException:
                pass

        @pytest.fixture
        def staged():
            return subprocess.run([sys.executable, "-m", "stages.no_such_stage"], capture_output=True, text=True)

        def test_unmarked_fixture(staged):
            pass

        @pytest.mark.pipeline
        def test_marked(staged):
            assert staged.returncode != 0 and "No module named stages.no_such_stage" in staged.stderr

        def test_unmarked_other_commands():
            assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).returncode == 0
    ''')
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess("-p", "tests.tiers", "-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=2, failed=2, errors=1)
    result.stdout.fnmatch_lines([  # errors (the fixture's) are listed before failures
        "*test_unmarked_fixture starts `python -m stages.no_such_stage` but is not marked @pytest.mark.pipeline*",
        "*test_unmarked_dvc starts `dvc` but is not marked @pytest.mark.pipeline*",
        "*test_unmarked_swallowed starts `dvc` but is not marked*",
    ])


def test_ci_runs_the_readme_command_and_its_tiers_run_every_test_once():
    """.ci/run's last line is the README's test command; its ``-m`` expressions split the suite:
    every test not marked slow is in exactly one tier, a slow one in none."""
    readme = (ROOT / "README.md").read_text().splitlines()
    command = next(line for line in readme if line.startswith('pip install -e ".[test]"'))
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci[-1] == command
    tiers = re.findall(r'python -m pytest -m "([^"]+)"', command)
    assert len(tiers) == 2 and command.count("python -m pytest") == 2
    for pipeline, slow in itertools.product((False, True), repeat=2):
        runs = sum(eval(tier, {"__builtins__": {}}, {"pipeline": pipeline, "slow": slow}) for tier in tiers)
        assert runs == (0 if slow else 1), (pipeline, slow)
