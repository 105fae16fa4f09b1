"""The MLflow experiment: created as a model-training experiment, with a description.

MLflow 3's UI opens an experiment in one of two views, GenAI (traces, judges, prompts) or model
training (runs, metrics, models), chosen by the experiment tag ``mlflow.experimentKind``; without
the tag it guesses, and an experiment without traces can open in the GenAI view. The value for
model training is ``custom_model_development`` (the ``ExperimentKind`` enum of MLflow's UI, in its
experiment-tracking constants; the UI's own kind selector writes the same tag). An experiment made before the tag was
set gets it on first use, unless someone chose a kind explicitly in the UI.
"""

from __future__ import annotations

from pathlib import Path

KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"


def _guessed(kind: str) -> bool:
    """A kind MLflow's UI inferred, not chosen by a person."""
    return not kind or kind.endswith("_inferred") or kind == "no_inferred_type"


def ensure_experiment(client, name: str, artifacts: Path | None = None, description: str = "") -> str:
    """The id of experiment ``name``: created when missing (artifacts under ``artifacts``, None:
    MLflow's default), tagged as model training and given ``description`` when it has none.
    Raises what ``MlflowClient`` raises when the store fails."""
    wanted = {KIND_TAG: MODEL_TRAINING} | ({DESCRIPTION_TAG: description} if description else {})
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifacts.as_uri() if artifacts else None,
                                            tags=wanted)
        except Exception:  # another process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if _guessed(exp.tags.get(KIND_TAG, "")):
        client.set_experiment_tag(exp.experiment_id, KIND_TAG, MODEL_TRAINING)
    if description and not exp.tags.get(DESCRIPTION_TAG):
        client.set_experiment_tag(exp.experiment_id, DESCRIPTION_TAG, description)
    return exp.experiment_id


def ui_link(experiment_id: str, run_id: str = "", ui: str = "http://127.0.0.1:5000") -> str:
    """The page of run ``run_id`` (or, without one, the experiment's runs table) in ``mlflow ui`` at
    ``ui``, in the model-training view: MLflow 3.17's UI opens its GenAI view unless the URL says
    ``workflowType=machine_learning`` (or the browser remembers that choice)."""
    page = f"runs/{run_id}" if run_id else "runs"
    return f"{ui}/#/experiments/{experiment_id}/{page}?workflowType=machine_learning"
