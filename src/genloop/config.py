"""The run configuration (YAML), validated with pydantic.

Shape::

    data: {name: two_moons, n: 1000, noise: 0.05}
    model: {name: gmm, n_components: 8}
    loop: {generations: 20, lambdas: [0, 0.5, 1, inf], scheme: replace, retrain: finetune, seeds: [0, 1, 2]}
    metrics: [w2, mmd, nll]

``data`` and ``model`` take the options of the named data source / model family, validated
against their constructors; a metric is a name or ``{name: ..., **options}``. Every problem
becomes one :class:`~genloop.errors.ConfigError` naming it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genloop.errors import ConfigError
from genloop.loop.schemes import SchemeName, parse_lambda


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(BaseModel):
    """The real data: a registered source, the training size n and the held-out size."""

    model_config = ConfigDict(extra="allow")

    name: str
    n: int = Field(gt=0, description="number of real training samples (n >= 1)")
    n_heldout: int | None = Field(default=None, ge=0, description="held-out real samples for evaluation")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check_source(self) -> DataConfig:
        from genloop.data import DATASETS

        DATASETS.validate(self.name, self.options)
        return self


class ModelConfig(BaseModel):
    """The model family (a registered name) and its options."""

    model_config = ConfigDict(extra="allow")

    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check_model(self) -> ModelConfig:
        from genloop.models import MODELS

        MODELS.validate(self.name, self.options)
        return self


class LoopConfig(_Strict):
    """How to retrain: generations, λ values, scheme, retraining mode, seeds."""

    generations: int = Field(ge=0)
    lambdas: list[float] = Field(min_length=1)
    scheme: SchemeName = "replace"
    retrain: Literal["finetune", "scratch"] = "finetune"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    n_eval: int | None = Field(default=None, gt=0, description="samples per generation for metrics")
    eval_against: Literal["heldout", "train"] = Field(
        default="heldout",
        description="real set the metrics compare with: the held-out split, or the training set "
        "(as the paper's image experiments do)",
    )

    @field_validator("lambdas", mode="before")
    @classmethod
    def _parse_lambdas(cls, value: Any) -> list[float]:
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [parse_lambda(v) for v in value]


class OutputConfig(_Strict):
    """What a run folder keeps."""

    checkpoints: Literal["all", "last"] = "all"
    keep_samples: int = Field(default=1000, ge=0, description="evaluation samples kept per generation")


class RunConfig(_Strict):
    """A whole experiment: every λ × seed of ``loop`` is one run."""

    name: str | None = None
    data: DataConfig
    model: ModelConfig
    loop: LoopConfig
    metrics: list[str | dict[str, Any]] = Field(default_factory=list)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("metrics")
    @classmethod
    def _check_metrics(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        from genloop.metrics import METRICS

        for m in value:
            if isinstance(m, str):
                METRICS.validate(m, {})
            else:
                opts = dict(m)
                name = opts.pop("name", None)
                if not isinstance(name, str):
                    raise ConfigError(f"a metric given as a mapping needs a 'name': {m!r}")
                METRICS.validate(name, opts)
        return value

    def resolved(self) -> dict[str, Any]:
        """A plain, YAML-safe dict of this config (λ = ∞ written as ``inf``)."""
        doc = self.model_dump(mode="json")
        doc["loop"]["lambdas"] = [format_lambda(v) for v in self.loop.lambdas]
        return doc


def format_lambda(lam: float) -> float | str:
    """λ for files and folder names: ``inf`` for ∞, else the number."""
    return "inf" if math.isinf(lam) else (int(lam) if float(lam).is_integer() else lam)


def _format_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, ConfigError):
            parts.append(str(ctx_err) if not loc else f"{loc}: {ctx_err}")
        elif err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r} in the config")
        elif err["type"] == "missing":
            parts.append(f"missing key {loc!r} in the config")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg} (got {err.get('input')!r})")
    return "; ".join(parts)


def parse_config(doc: Any) -> RunConfig:
    """Validate a config mapping; raise :class:`ConfigError` with every problem named."""
    if not isinstance(doc, dict):
        raise ConfigError(f"the config must be a mapping with keys data, model, loop, metrics; got {type(doc).__name__}")
    try:
        return RunConfig.model_validate(doc)
    except ConfigError:
        raise
    except pydantic.ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply ``key.sub=value`` overrides (values parsed as YAML), validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    doc = doc if doc is not None else {}
    for item in overrides or []:
        apply_override(doc, item)
    return parse_config(doc)


def apply_override(doc: dict[str, Any], item: str) -> None:
    """Apply one ``--set a.b.c=value`` to ``doc`` in place (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node = doc
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {p!r} is not a mapping in the config")
        node = nxt
    node[parts[-1]] = value

