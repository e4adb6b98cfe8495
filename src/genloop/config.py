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

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
import yaml
from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from genloop.errors import ConfigError
from genloop.loop.schemes import SchemeName, parse_lambda
from genloop.loop.variants import MixtureVariant, PlainVariant, VariantField

if TYPE_CHECKING:
    from genloop.data import RealSplit
    from genloop.data.base import DataSource


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_count(value: Any) -> Any:
    """An integer count: ints, and floats or strings that are whole numbers (``1e6``), never a bool.

    YAML reads ``true`` as a bool (which Python counts as 1) and ``1e6`` as a string; both are
    mistakes or shorthands a count must not silently absorb.
    """
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = float(value.replace("_", ""))
        except ValueError:
            raise ValueError("expected a whole number") from None
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise ValueError("expected a whole number")
        return int(value)
    raise ValueError(f"expected a whole number, not a {type(value).__name__}")


#: A whole number given as an int, a whole float or a string such as ``1e6``; never a bool.
Count = Annotated[int, BeforeValidator(_as_count)]

#: Plain experiment names: they become a folder under ``runs/``.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


class DataConfig(BaseModel):
    """The real data: a registered source, the training size n and the held-out size."""

    model_config = ConfigDict(extra="allow")

    name: str
    n: Count = Field(gt=0, description="number of real training samples (n >= 1)")
    n_heldout: Count | None = Field(default=None, ge=0, description="held-out real samples for evaluation")

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

    generations: Count = Field(ge=0)
    lambdas: list[float] = Field(min_length=1)
    scheme: SchemeName = "replace"
    retrain: Literal["finetune", "scratch"] = "finetune"
    seeds: list[Annotated[Count, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1)
    n_eval: Count | None = Field(default=None, gt=0, description="samples per generation for metrics")
    eval_against: Literal["heldout", "train"] = Field(
        default="heldout",
        description="real set the metrics compare with: the held-out split, or the training set "
        "(as the paper's image experiments do)",
    )
    eval_samples: Literal["fresh", "reuse"] = Field(
        default="fresh",
        description="fresh: draw n_eval evaluation samples per generation; reuse: evaluate generation t on the "
        "first n_eval samples of generation t+1's synthetic set, drawing only the shortfall (docs/runs.md)",
    )
    variant: VariantField = Field(
        default_factory=PlainVariant,
        description="how the synthetic half is made: {kind: plain | curated | corrected | biased | mixture, ...} "
        "(docs/variants.md)",
    )
    # issue 12 (checkpoints as generation 0): false makes generation 0 the model's `init`
    # checkpoint evaluated as it is, without training (the paper's image runs)
    train_generation_0: bool = Field(
        default=True,
        description="false: generation 0 is the model's init checkpoint, evaluated without training",
    )

    @field_validator("lambdas", mode="before")
    @classmethod
    def _parse_lambdas(cls, value: Any) -> list[float]:
        if not isinstance(value, (list, tuple)):
            value = [value]
        lams = [parse_lambda(v) for v in value]
        _refuse_duplicates(value, lams)
        return lams

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        _refuse_duplicates(value, value)
        return value

    @model_validator(mode="after")
    def _reuse_needs_plain(self) -> LoopConfig:
        if self.eval_samples == "reuse" and self.variant.kind != "plain":
            raise ValueError(
                f"eval_samples: reuse needs the plain variant (the {self.variant.kind!r} variant's synthetic set is "
                "not a sample of the model); use eval_samples: fresh"
            )
        return self


def _refuse_duplicates(written: list[Any], parsed: list[Any]) -> None:
    """Two equal entries would be two runs writing one folder: name them."""
    seen: dict[Any, Any] = {}
    for raw, val in zip(written, parsed):
        if val in seen:
            raise ConfigError(f"the same value is listed twice ({seen[val]!r} and {raw!r}); each value is one run folder")
        seen[val] = raw


class EveryCheckpoints(_Strict):
    """``output.checkpoints: {every: k}``: keep the checkpoints of generations 0, k, 2k, … and the newest."""

    every: Count = Field(ge=1)


def _checkpoint_policy(value: Any) -> Any:
    """``all``, ``last`` or ``{every: k}`` (k a whole number >= 1); anything else named in one line."""
    if value in ("all", "last") or isinstance(value, EveryCheckpoints):
        return value
    if isinstance(value, dict) and set(value) == {"every"}:
        try:
            every = _as_count(value["every"])
        except ValueError:
            every = 0
        if every >= 1:
            return EveryCheckpoints(every=every)
    raise ConfigError(f"must be all, last or {{every: k}} with a whole k >= 1, got {value!r}")


class OutputConfig(_Strict):
    """What a run folder keeps.

    ``checkpoints`` (also written ``keep_checkpoints``) says which generations' model
    checkpoints stay on disk: ``all``; ``last`` (only the newest completed generation's);
    ``{every: k}`` (generations 0, k, 2k, … and the newest). A resume always continues from a
    kept checkpoint (docs/runs.md, "Which checkpoints are kept").
    """

    checkpoints: Annotated[Literal["all", "last"] | EveryCheckpoints, BeforeValidator(_checkpoint_policy)] = Field(
        default="all", validation_alias=AliasChoices("checkpoints", "keep_checkpoints"),
        description="model checkpoints kept: all | last | {every: k} (the newest is always kept)",
    )
    keep_samples: Count = Field(default=1000, ge=0, description="evaluation samples kept per generation")

    def policy(self) -> str | dict[str, int]:
        """``checkpoints`` as the run store takes it: ``"all"``, ``"last"`` or ``{"every": k}``."""
        c = self.checkpoints
        return {"every": c.every} if isinstance(c, EveryCheckpoints) else c
    training_checkpoint_every: Count = Field(
        default=200_000, gt=0,
        description="neural families: training samples between two checkpoints inside a generation "
        "(a killed generation resumes from the last one)",
    )


class TrackingConfig(_Strict):
    """Optional experiment tracking (``--track mlflow`` sets ``backend``)."""

    backend: Literal["none", "mlflow"] = "none"
    uri: str | None = Field(default=None, description="MLflow tracking URI (default: a local mlruns/ file store in the output folder)")
    experiment: str | None = Field(default=None, description="MLflow experiment name (default: the output folder's name)")


class ResourcesConfig(_Strict):
    """What one run asks of an executor (the Ray executor schedules by these)."""

    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0)


class RunConfig(_Strict):
    """A whole experiment: every λ × seed of ``loop`` is one run."""

    name: str | None = None
    data: DataConfig
    model: ModelConfig
    loop: LoopConfig
    metrics: list[str | dict[str, Any]] = Field(default_factory=list)
    output: OutputConfig = Field(default_factory=OutputConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not _PLAIN_NAME.match(value) or ".." in value):
            raise ConfigError(
                f"name must be a plain folder name (letters, digits, . _ = + -, no '/' or '..'), got {value!r}; "
                "use --out to write elsewhere"
            )
        return value

    @field_validator("metrics")
    @classmethod
    def _check_metrics(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        from genloop.metrics import METRICS

        names: list[str] = []
        for m in value:
            if isinstance(m, str):
                METRICS.validate(m, {})
                names.append(m)
            else:
                opts = dict(m)
                name = opts.pop("name", None)
                if not isinstance(name, str):
                    raise ConfigError(f"a metric given as a mapping needs a 'name': {m!r}")
                METRICS.validate(name, opts)
                names.append(name)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"metric {', '.join(map(repr, twice))} is listed more than once; its values would collide")
        return value

    @model_validator(mode="after")
    def _mixture_keeps_checkpoints(self) -> RunConfig:
        if isinstance(self.loop.variant, MixtureVariant) and self.output.checkpoints != "all":
            raise ConfigError("loop.variant mixture samples from earlier generations' models: it needs "
                              f"output.checkpoints: all (a resumed run reloads them), not {self.output.policy()!r}")
        return self

    def resolved(self) -> dict[str, Any]:
        """A plain, YAML-safe dict of this config (λ = ∞ written as ``inf``)."""
        doc = self.model_dump(mode="json")
        doc["loop"]["lambdas"] = [format_lambda(v) for v in self.loop.lambdas]
        if self.loop.variant == PlainVariant():  # the paper's loop: written as before variants existed
            doc["loop"].pop("variant", None)
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


def parse_stored_config(doc: Any) -> RunConfig:
    """Validate a config read back from a run folder, importing no code it names.

    Model, data and metric names that are import paths or installed entry points are checked
    for their form only (their options are validated when a run starts): reading a folder
    (``genloop check``, ``show``, ``report``) never runs code a config names.
    """
    from genloop.registry import code_imports_disabled

    with code_imports_disabled():
        return parse_config(doc)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping with a repeated key is an error (PyYAML
    silently keeps the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            repeated = key in seen
        except TypeError:  # unhashable key: the base constructor reports it
            break
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: str | Path, *, what: str = "config file") -> Any:
    """Parse a YAML file; unreadable files, bad encodings, bad YAML and repeated keys are
    :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what PyYAML found and where (its own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def read_config_doc(path: str | Path, overrides: list[str] | None = None) -> Any:
    """A YAML config as written, with ``key.sub=value`` overrides applied (values parsed as YAML)."""
    doc = read_yaml(path)
    doc = doc if doc is not None else {}
    if overrides and not isinstance(doc, dict):
        raise ConfigError(f"config file {path} must be a mapping to apply --set, got a {type(doc).__name__}")
    for item in overrides or []:
        apply_override(doc, item)
    return doc


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config of one experiment (no sweeps), apply overrides, validate."""
    doc = read_config_doc(path, overrides)
    sweeps = find_sweeps(doc)
    if sweeps:
        picks = " ".join(f"--set {'.'.join(path)}={values[0]}" for path, values in sweeps)
        raise ConfigError(f"config file {path} is a grid (sweeps at {', '.join('.'.join(p) for p, _ in sweeps)}); "
                          f"this command takes one cell: pick it with {picks}")
    return parse_config(doc)


# ---- sweeps: ``{sweep: [...]}`` markers in a config (expanded into cells by genloop.sweep.grid) ----
SWEEP = "sweep"

#: Keys that are lists already (each value one run of every cell), never sweeps.
_RUN_AXES = (("loop", "lambdas"), ("loop", "seeds"))


def is_sweep(value: Any) -> bool:
    """Whether ``value`` is a sweep marker ``{sweep: [...]}``."""
    return isinstance(value, dict) and set(value) == {SWEEP}


def find_sweeps(doc: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], list[Any]]]:
    """Every ``(key path, values)`` swept in ``doc``, in the order they appear."""
    if is_sweep(doc):
        values = doc[SWEEP]
        key = ".".join(path)
        if not path:
            raise ConfigError("the whole config cannot be a sweep; put {sweep: [...]} at a key, e.g. model.name: {sweep: [gmm, kde]}")
        if path in _RUN_AXES:
            raise ConfigError(f"{key} is already a list of runs; write it as a plain list, not a sweep")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{key}: a sweep needs a non-empty list of values, got {values!r}")
        canon = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(canon)) != len(canon):
            raise ConfigError(f"{key}: the sweep lists the same value twice: {values!r}")
        if any(find_sweeps(v) for v in values):
            raise ConfigError(f"{key}: sweeps cannot be nested inside sweep values")
        return [(path, list(values))]
    out: list[tuple[tuple[str, ...], list[Any]]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(find_sweeps(v, (*path, str(k))))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(find_sweeps(v, (*path, str(i))))
    return out


# ---- the real data a config describes ---------------------------------------------------------
def real_data(cfg: RunConfig, seed: int) -> tuple[DataSource, RealSplit]:
    """The data source and the (train, held-out) split of a run with ``seed``.

    The split depends only on the seed, so runs with the same seed and different λ share
    their real data.
    """
    from genloop.data import make_data, split_real
    from genloop.rng import stage_rng

    source = make_data(cfg.data.name, **cfg.data.options)
    n_heldout = cfg.data.n_heldout
    if n_heldout is None and cfg.loop.eval_against == "train":
        n_heldout = 0
    if n_heldout is None:
        n_heldout = cfg.data.n if source.infinite else min(cfg.data.n, len(source) - cfg.data.n)
        if n_heldout < 1:
            raise ConfigError(
                f"data set {cfg.data.name!r} has {len(source)} samples: n={cfg.data.n} leaves none held out; "
                "lower data.n or set data.n_heldout"
            )
    return source, split_real(source, cfg.data.n, n_heldout, rng=stage_rng(seed, 0, "data"))


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

