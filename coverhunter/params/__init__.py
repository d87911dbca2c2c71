"""Typed view of ``params.yaml``, the single source of every number the code uses.

Each section maps to a frozen pydantic dataclass with no defaults, so every value is
type-checked (``lr: "abc"`` fails, ``lr: 1e-3`` is a float) and range-checked on load, and
a missing or unknown key is an error naming ``section.key``: a typo in ``params.yaml``
cannot silently fall back to a hidden default. ``dataclasses.replace`` re-validates.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from coverhunter.params.base import dataclass
from coverhunter.params.method import (
    AlignParams,
    AugmentParams,
    BaselineParams,
    DataParams,
    EvalParams,
    FeatureParams,
    FineParams,
    FusionParams,
    LossParams,
    ModelParams,
    RerankParams,
    TrainParams,
)
from coverhunter.params.ops import FlowParams, IndexParams, PretrainParams, ServeParams

__all__ = ["AlignParams", "AugmentParams", "BaselineParams", "DataParams", "EvalParams", "FeatureParams",
           "FineParams", "FlowParams", "FusionParams", "IndexParams", "LossParams", "ModelParams", "Params",
           "PretrainParams", "RerankParams", "ServeParams", "TrainParams", "dataclass", "from_dict", "load",
           "load_params", "profiles", "section"]


@dataclass
class Params:
    features: FeatureParams
    model: ModelParams
    loss: LossParams
    train: TrainParams
    evaluate: EvalParams
    baselines: dict[str, BaselineParams]   # profile name -> constants (classic, tuned)
    fusion: FusionParams
    rerank: RerankParams
    align: AlignParams
    fine: FineParams
    augment: AugmentParams
    data: DataParams
    index: IndexParams
    serve: ServeParams
    flow: FlowParams
    pretrain: PretrainParams
    demo: Any                  # coverhunter.demo.params.DemoParams of demo.size (its own checks)


T = TypeVar("T")


def section(cls: type[T], raw: dict[str, Any], name: str) -> T:
    """Build one section, naming any missing, unknown or invalid key."""
    if not isinstance(raw, dict):
        raise ValueError(f"params: section '{name}' must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    missing = sorted(set(fields) - set(raw))
    if unknown or missing:
        parts = [f"unknown key {name}.{k}" for k in unknown]
        parts += [f"missing key {name}.{k}" for k in missing]
        raise ValueError("params: " + "; ".join(parts))
    try:
        return cls(**raw)
    except pydantic.ValidationError as err:
        raise ValueError("params: " + "; ".join(_problem(e, name) for e in err.errors())) from None


def _problem(error: dict, name: str) -> str:
    """One pydantic error as ``section.key: what is wrong (got value)``."""
    if error["type"] == "value_error":          # a section's own check: it names its keys
        return str(error["ctx"]["error"]).removeprefix("params: ")
    where = ".".join([name, *(str(x) for x in error["loc"])])
    return f"{where}: {error['msg'].lower()} (got {error['input']!r})"


def profiles(cls: type[T], raw: dict[str, Any], name: str) -> dict[str, T]:
    """A section that maps profile names to one ``cls`` each (``baselines:``)."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"params: section '{name}' must map profile names to settings")
    return {k: section(cls, v, f"{name}.{k}") for k, v in raw.items()}


def from_dict(raw: dict[str, Any]) -> Params:
    """Parse and check the whole parameter tree; every section is required."""
    from coverhunter.demo.params import demo_params  # the demo's own checks (light import)

    classes = {"features": FeatureParams, "model": ModelParams, "loss": LossParams,
               "train": TrainParams, "evaluate": EvalParams, "fusion": FusionParams, "rerank": RerankParams,
               "align": AlignParams,
               "fine": FineParams, "augment": AugmentParams, "data": DataParams,
               "index": IndexParams, "serve": ServeParams, "flow": FlowParams, "pretrain": PretrainParams}
    if not isinstance(raw, dict):
        raise ValueError(f"params: expected a mapping of sections, got {type(raw).__name__}")
    missing = [k for k in (*classes, "baselines", "demo") if k not in raw]
    if missing:
        raise ValueError(f"params: missing section(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - {*classes, "baselines", "demo"})
    if unknown:
        raise ValueError(f"params: unknown section(s) {', '.join(unknown)}")
    params = Params(**{k: section(classes[k], raw[k], k) for k in classes},
                    baselines=profiles(BaselineParams, raw["baselines"], "baselines"),
                    demo=demo_params(raw))
    for key, names in (("profile", [params.fusion.profile]), ("fit_profiles", params.fusion.fit_profiles)):
        for name in names:
            if name not in params.baselines:
                raise ValueError(f"params: fusion.{key} {name!r} is not a baselines: profile "
                                 f"(known: {', '.join(params.baselines)})")
    return params


def load(path: str | Path = "params.yaml") -> tuple[Params, dict[str, Any]]:
    """The checked params and the raw mapping (for logging and run fingerprints); every
    error names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such params file (pass --params or run from the project folder)")
    try:
        with path.open() as fh:                # a stream, so a YAML error names the file
            raw = yaml.safe_load(fh)
        return from_dict(raw), raw
    except (ValueError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: {err}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check ``params.yaml`` (default: the one in the working directory)."""
    return load(path)[0]
