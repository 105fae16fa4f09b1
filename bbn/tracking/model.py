"""The trained model as an MLflow model: a pyfunc that classifies encoded images.

``mlflow.pyfunc.load_model(uri).predict(frame)`` (and ``mlflow models predict`` / ``serve``) takes
a DataFrame with one column ``image`` of encoded image files (JPEG, PNG, ...; base64 in JSON
requests) and returns, per image, the top-1 ``category_id``, its ``name`` and ``probability``.
The images go through the evaluation's input (``bbn.data.prepare.test_images``: the prepare step in
memory, then the checkpoint's test transform) and both-branch
inference (``bbn.model.inference.predict``) at the branch weight ``bbn.model.inference.test_alpha``
gives for the params ``alpha`` (default 0.5) and ``tta_flip`` (default false), as the evaluation
does. The model's only artifact is the project's checkpoint file, byte for byte; the ``bbn``
package travels with it as code, so the model loads where ``bbn`` is not installed.

The model is logged "from code" (``bbn/tracking/pyfunc_model.py``), so loading it unpickles
nothing. MLflow's PyTorch flavour is not used: it saves the network only (not the label set, the transform
or the branch weight) and its default ``torch.export`` path needs an input example and traceable
code; the pyfunc serves the whole prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import mlflow.pyfunc
import numpy as np
import pandas as pd

import bbn

if TYPE_CHECKING:
    from bbn.model.checkpoint import Checkpoint

ARTIFACT = "checkpoint"
REQUIREMENTS = ("torch", "torchvision", "numpy", "pandas", "pillow", "tqdm", "pyyaml")


def signature():
    """Input: one binary column ``image``; output: category_id, name, probability; params alpha, tta_flip."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=Schema([ColSpec("long", "category_id"), ColSpec("string", "name"), ColSpec("double", "probability")]),
        params=ParamSchema([ParamSpec("alpha", "double", 0.5), ParamSpec("tta_flip", "boolean", False)]))


class Classifier(mlflow.pyfunc.PythonModel):
    """Images (encoded bytes) to classes with a ``models/model.pt`` checkpoint (see the module docstring)."""

    def load_context(self, context) -> None:
        from bbn.model.checkpoint import load_checkpoint
        from bbn.model.inference import resolve_device

        self.device = resolve_device((context.model_config or {}).get("device", "auto"))
        self.model, self.ckpt = load_checkpoint(context.artifacts[ARTIFACT], self.device)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return classify_bytes(self.model, self.ckpt, list(model_input["image"]), self.device, **(params or {}))


def classify_bytes(model, ckpt: Checkpoint, images_bytes: list[bytes], device, alpha: float = 0.5, tta_flip: bool = False,
                   batch_size: int = 64) -> pd.DataFrame:
    """Top-1 category_id, name and probability per encoded image, through the evaluation path."""
    import torch

    from bbn.data.prepare import test_images
    from bbn.model.inference import predict, test_alpha

    # the evaluation's input from the original bytes (the prepare step in memory): bbn.data.prepare.test_images
    images = test_images(ckpt, [], [], originals=True)
    tensors = [images.transform(images.load(bytes(b))) for b in images_bytes]
    batches = [(torch.stack(tensors[i:i + batch_size]), torch.zeros(len(tensors[i:i + batch_size]), dtype=torch.long))
               for i in range(0, len(tensors), batch_size)]
    logits, _ = predict(model, batches, device, test_alpha(ckpt, float(alpha)), tta_flip=bool(tta_flip))
    probs = torch.softmax(torch.from_numpy(logits).double(), 1).numpy()
    best = probs.argmax(1)
    return pd.DataFrame({"category_id": np.asarray(ckpt.category_ids, dtype=np.int64)[best],
                         "name": np.asarray(ckpt.names, dtype=object)[best],
                         "probability": probs[np.arange(len(best)), best]})


def requirements() -> list[str]:
    """pip requirements pinned to the installed versions (what inference imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def example(paths: list[str | Path]) -> pd.DataFrame:
    """An input example: the given image files' bytes in column ``image``."""
    return pd.DataFrame({"image": [Path(p).read_bytes() for p in paths]})


def log_model(tracker, checkpoint: str | Path, example_images: list[str | Path], register: str = "",
              name: str = "model", step: int = 0) -> str | None:
    """Log ``checkpoint`` as the pyfunc model ``name`` (the run's name: MLflow's Models column and model
    page show it) of ``tracker``'s run (a ``bbn.tracking.Tracker``), with signature and input example;
    ``register``: also a new version of that registered model; ``step``: the epoch the model is the
    state after (MLflow attaches the run's metrics at that step to the model). Returns the model's URI
    (``models:/m-…``), or None while the store is away (the model is logged when it is back)."""
    def _log(client, run_id):
        import mlflow
        from mlflow.models import Model

        mlflow.set_tracking_uri(tracker.uri)  # Model.log takes the store and the experiment from the
        mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)  # global settings
        info = Model.log(artifact_path=None, name=name, flavor=mlflow.pyfunc, run_id=run_id, step=step,
                         python_model=str(Path(__file__).with_name("pyfunc_model.py")),  # models from code: no pickle
                         artifacts={ARTIFACT: str(checkpoint)}, code_paths=[str(Path(bbn.__file__).parent)],
                         signature=signature(), input_example=example(example_images),
                         pip_requirements=requirements(), registered_model_name=register or None,
                         model_config={"device": "auto"})
        return info.model_uri

    return tracker.submit("log_model", _log)


def log_model_metrics(tracker, model_run: str | None, metrics: dict[str, float], dataset: tuple[str, str] = ("", "")) -> None:
    """Attach ``metrics`` to the model logged by run ``model_run`` (MLflow 3's model metrics: the
    model's page and the experiment's Models tab show them), logged in ``tracker``'s run and, with
    ``dataset`` = (name, digest), tied to that dataset input. Nothing when the run logged no model."""
    if not model_run or not metrics:
        return

    def _log(client, run_id):
        import time

        from mlflow.entities import Metric

        outputs = client.get_run(model_run).outputs
        models = [m.model_id for m in (outputs.model_outputs if outputs else [])]
        if not models:
            return
        now, (data, digest) = int(time.time() * 1000), dataset
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0, model_id=models[0], dataset_name=data or None,
                                                 dataset_digest=digest or None, run_id=run_id)
                                          for k, v in metrics.items()])

    tracker.submit("log model metrics", _log)
