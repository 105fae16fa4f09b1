"""What a failed MLflow call means for the ``Tracker`` (``bbn.tracking.store``): the store is away
(retry later: ``store_failure``), the call is wrong (drop it), or the call lost a race with another
process writing the same store (retry at once: ``write_conflict``); and opening a store without
MLflow's minutes of back-off (``quiet_store_log``, ``open_store``).
"""

from __future__ import annotations

import logging

from bbn.errors import describe_os_error
from bbn.files import sqlite_path

# MLflow error codes that mean "this request is wrong", not "the store is away": retrying cannot help
REQUEST_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                  "INVALID_STATE", "BAD_REQUEST", "PERMISSION_DENIED"}
CONFLICT_RETRIES = 5
# what sqlite says when two processes write one store at once (queued experiments): the loser retries
CONFLICTS = ("IntegrityError", "UNIQUE constraint failed", "database is locked", "database table is locked")


def write_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that lost a race with another process on the same store: an insert
    of a row the other just inserted (MLflow's dataset entries: ``IntegrityError``, which MLflow
    reports as a BAD_REQUEST) or a lock it held. Retrying succeeds once the other has committed."""
    seen = exc
    for _ in range(4):  # MlflowException wraps SQLAlchemy's error, which wraps sqlite3's
        if seen is None:
            break
        if any(c in f"{type(seen).__name__}: {seen}" for c in CONFLICTS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the store is away (retry later) rather than that the call is wrong:
    connection and file errors, database errors, and MLflow errors other than request errors."""
    if isinstance(exc, OSError):  # includes ConnectionError and requests' connection errors
        return True
    if type(exc).__module__.split(".")[0] in ("sqlalchemy", "sqlite3", "requests", "urllib3"):
        return True
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code not in REQUEST_ERRORS


def refused_write(exc: BaseException) -> str | None:
    """What the disk under a store that answers refused, when ``exc`` is such a write: an ``OSError``
    of ``bbn.errors.ENVIRONMENT_ERRNOS`` (no space left, quota, read-only, permission), as an artifact
    upload onto a full disk raises. ``<file>: <reason>`` (the destination when a copy names both
    files), or the reason alone when the error names no file; None for any other error. Retrying
    within the stage cannot help, unlike a store that is away."""
    return describe_os_error(exc, destination=True) if isinstance(exc, OSError) else None


CONNECT_ATTEMPTS = 3  # MLflow's own default, 10, sleeps ~100 s before a store that cannot be opened fails


def quiet_store_log() -> None:
    """MLflow's sqlite store logs a full traceback for every failed query, and its system-metrics
    thread a long warning: ``Tracker``'s one-line warnings say the same without looking like a crash.
    And a store that cannot be opened fails after ``CONNECT_ATTEMPTS`` tries (0.4 s), not after
    MLflow's ten (~100 s of back-off at every stage): ``Tracker`` retries later anyway. MLflow makes
    a sqlite store's folder from the URI without decoding it (a ``proj%20x`` folder beside ``proj x``):
    it is made from the decoded path instead (``bbn.files.sqlite_path``)."""
    from mlflow.store.db import utils

    utils.MAX_RETRY_COUNT = min(getattr(utils, "MAX_RETRY_COUNT", CONNECT_ATTEMPTS), CONNECT_ATTEMPTS)
    if hasattr(utils, "_make_parent_dirs_if_sqlite"):
        utils._make_parent_dirs_if_sqlite = _make_store_folder
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("mlflow.system_metrics.system_metrics_monitor").setLevel(logging.ERROR)


def _make_store_folder(uri: str) -> None:
    path = sqlite_path(uri)
    if path is not None and str(path) not in ("", ":memory:"):
        path.parent.mkdir(parents=True, exist_ok=True)


def open_store(uri: str):
    """An ``MlflowClient`` on ``uri`` that answered a query; ``BBNError`` in one line when the store
    cannot be opened (for commands that need it: ``bbn-report``)."""
    from mlflow.tracking import MlflowClient

    from bbn.errors import BBNError

    quiet_store_log()
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:
        if not store_failure(exc):
            raise
        raise BBNError(f"cannot open the MLflow store {uri} ({type(exc).__name__}: {first_line(exc)})") from None
    return client


def first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    named = [line for line in lines if "Error)" in line]  # SQLAlchemy's "(sqlite3.OperationalError) ..." line
    return (named or lines or [""])[0][:300]
