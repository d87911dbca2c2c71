"""The trained model in MLflow: a pyfunc wrapper (log-CQT in, embeddings out), logging a
checkpoint as a registered model's version, and loading the champion back. Which version
is the champion is :mod:`coverhunter.mlops.promotion`'s business.
"""
from __future__ import annotations

import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

from coverhunter.digest import file_sha1

DEFAULT_NAME = "coverhunter"
CHAMPION, CHALLENGER = "champion", "challenger"
CHECKPOINT_ARTIFACT = "checkpoint"
REQUIREMENTS = ("torch", "nnAudio", "numpy", "mlflow", "pydantic", "pyyaml")   # what the bundled code imports
PACKAGE = Path(__file__).resolve().parents[1]   # the coverhunter package, bundled with each model
EXAMPLE_FRAMES = 64   # the input example: (1, 64, n_bins), 2.6 s at 25 frames/s


class CoverHunterPyfunc(mlflow.pyfunc.PythonModel):
    """Serves a CoverHunter checkpoint: log-CQT ``(batch, frames, bins)`` float32 →
    L2-normalised embeddings ``(batch, embedding_dim)`` float32.

    Nothing is pickled: the logged model stores a three-line script that builds this
    wrapper ("models from code"), and ``load_context`` rebuilds the network from the
    checkpoint artifact with ``coverhunter.model.checkpoint.load_model``
    (``torch.load(weights_only=True)``).
    ``params={"lengths": [...]}`` gives each item's valid frames (default: all frames).
    ``model_config`` at load time: ``device`` (default ``cpu``), ``batch_size`` (64)."""

    def load_context(self, context) -> None:
        import torch

        from coverhunter.model.checkpoint import load_model

        config = dict(context.model_config or {})
        self._device = torch.device(config.get("device", "cpu"))
        self._batch = int(config.get("batch_size", 64))
        self._model = load_model(context.artifacts[CHECKPOINT_ARTIFACT]).to(self._device)

    def __getstate__(self) -> dict:
        return {}   # never pickle a loaded network

    # The np.ndarray hint tells MLflow to take the input as it comes (the signature checks it).
    def predict(self, context, model_input: np.ndarray,
                params: dict | None = None) -> np.ndarray:
        import torch

        if isinstance(model_input, dict) and len(model_input) == 1:   # a named tensor
            model_input = next(iter(model_input.values()))
        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"expected (batch, frames, bins), got shape {x.shape}")
        lengths = (params or {}).get("lengths")
        if lengths is not None and len(lengths) == 0:   # the signature's default: all frames
            lengths = None
        if lengths is not None and len(lengths) != len(x):
            raise ValueError(f"{len(lengths)} lengths for a batch of {len(x)}")
        out = []
        for start in range(0, len(x), self._batch):
            xb = torch.from_numpy(x[start:start + self._batch]).to(self._device)
            lb = None if lengths is None else torch.as_tensor(
                lengths[start:start + self._batch], dtype=torch.long, device=self._device)
            out.append(self._model.embed(xb, lb).cpu().numpy())
        if not out:
            return np.zeros((0, self._model.bottleneck.out_features), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)


# "Models from code": MLflow stores this script and runs it to rebuild the wrapper, so
# nothing is pickled (a pickled PythonModel is what MLflow warns about).
_MODEL_CODE = """\
import mlflow
from coverhunter.mlops.registry import CoverHunterPyfunc

mlflow.models.set_model(CoverHunterPyfunc())
"""


def pinned_requirements() -> list[str]:
    """``name==version`` of the installed torch, nnAudio, numpy, mlflow and coverhunter.
    A local label (``2.13.0+cpu``) is dropped: ``torch==2.13.0`` still matches the
    installed build (PEP 440) and also admits the CUDA build on a GPU server."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def model_signature(n_bins: int, embedding_dim: int) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, n_bins))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, embedding_dim))]),
        params=ParamSchema([ParamSpec("lengths", "long", [], (-1,))]))


def log_model(checkpoint_path: str | Path, n_bins: int, embedding_dim: int,
              name: str = "model", input_example: bool = True) -> str:
    """Log the checkpoint as a pyfunc model (linked to the active run, if any); returns
    its ``models:/<model_id>`` URI.

    The artifact is a slim copy of the checkpoint (``config`` and ``model`` only: no
    optimiser or RNG state), beside a copy of this package's code (the demo builder
    left out). Requirements are pinned (``pinned_requirements``), never
    inferred. With ``input_example`` MLflow stores a ``(1, 64, n_bins)`` example and
    checks it against the model once while logging."""

    from coverhunter.model.checkpoint import load_checkpoint, save_model, tensors_digest

    state = load_checkpoint(Path(checkpoint_path))
    if state["config"]["n_bins"] != n_bins:
        raise ValueError(f"checkpoint has n_bins={state['config']['n_bins']}, not {n_bins}")
    if state["config"]["model"]["embedding_dim"] != embedding_dim:
        raise ValueError(f"checkpoint has embedding_dim="
                         f"{state['config']['model']['embedding_dim']}, not {embedding_dim}")
    tmp = Path(tempfile.mkdtemp(prefix="coverhunter-model-"))
    try:
        slim = tmp / "checkpoint.pt"
        save_model(state, slim)
        example = (np.full((1, EXAMPLE_FRAMES, n_bins), -40.0, dtype=np.float32)
                   if input_example else None)
        code = tmp / "coverhunter_model.py"
        code.write_text(_MODEL_CODE)
        # the package's code travels with the model (code_paths), so `mlflow models serve`
        # needs no coverhunter wheel: only the pinned requirements
        bundled = shutil.copytree(PACKAGE, tmp / "code" / "coverhunter",
                                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "demo"))
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(code), code_paths=[str(bundled)],
            metadata={"checkpoint_sha1": file_sha1(checkpoint_path),    # finds the version again
                      "tensors_sha256": tensors_digest(state)},        # what load checks
            artifacts={CHECKPOINT_ARTIFACT: str(slim)},
            signature=model_signature(n_bins, embedding_dim),
            input_example=example, pip_requirements=pinned_requirements())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info.model_uri


def version_of(checkpoint_sha1: str, name: str = DEFAULT_NAME) -> str | None:
    """The newest registered version logged from a checkpoint with these bytes, or None."""
    versions = MlflowClient().search_model_versions(f"name='{name}'")
    for mv in sorted(versions, key=lambda v: -int(v.version)):
        metadata = mlflow.models.get_model_info(version_uri(mv.version, name)).metadata or {}
        if metadata.get("checkpoint_sha1") == checkpoint_sha1:
            return str(mv.version)
    return None


def version_uri(version: str, name: str = DEFAULT_NAME) -> str:
    """``models:/<name>/<version>``."""
    return f"models:/{name}/{version}"


def registered_version(model_uri: str, name: str = DEFAULT_NAME) -> str | None:
    """The version a ``models:/<name>/<version>`` URI names (None for any other URI, e.g. a
    logged model's ``models:/<model_id>`` not yet registered)."""
    prefix = f"models:/{name}/"
    rest = model_uri[len(prefix):] if model_uri.startswith(prefix) else ""
    return rest if rest.isdigit() else None


def load_champion(name: str = DEFAULT_NAME, model_config: dict | None = None):
    """The pyfunc model at ``models:/<name>@champion``."""
    return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}", model_config=model_config)



def download_checkpoint(model_uri: str, dst: str | Path) -> Path:
    """The checkpoint file inside a logged model (e.g. ``models:/coverhunter@champion``),
    downloaded under ``dst``; load it with :func:`coverhunter.model.checkpoint.load_model`."""
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    found = sorted(local.rglob("checkpoint.pt"))
    if not found:
        raise FileNotFoundError(f"{model_uri}: the logged model holds no checkpoint.pt")
    return found[0]
