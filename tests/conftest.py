"""Shared fixtures, and the test tiers' run-time check (``tests/tiers.py``). The helpers the tests
import (a temporary copy of the repository that DVC and MLflow really run in, ``sh``, ``stage``, the
local HTTP server, synthetic files) are in ``tests/helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_repo

pytest_plugins = ["tests.tiers", "pytester"]  # tiers: fails an unmarked test that starts DVC, a stage, ...


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo") / "bbn")
