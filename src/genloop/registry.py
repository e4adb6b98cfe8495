"""Name → class registries with validated construction.

Models, data sources and metrics are registered under a name and built from a config mapping
``{name: ..., **options}``. Options are validated against the constructor's signature with a
pydantic model built from its annotations, so a misspelt or mistyped option is an error that
names the option and the known ones, never a silently ignored ``**kwargs``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any, Callable, Generic, TypeVar, get_type_hints

import pydantic

from genloop.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A registry of classes (or factories) of one kind, e.g. ``"model"``."""

    def __init__(self, kind: str, modules: Sequence[str] = ()) -> None:
        self.kind = kind
        #: modules whose import registers entries, imported on the first look-up rather than
        #: at package import, so ``import genloop`` stays light (no torch).
        self.modules = list(modules)
        self._loaded = False
        self._entries: dict[str, Callable[..., T]] = {}
        self._validators: dict[str, type[pydantic.BaseModel]] = {}

    def load(self) -> None:
        """Import every module of :attr:`modules` (once), which registers their entries."""
        if self._loaded:
            return
        for module in self.modules:
            importlib.import_module(module)
        self._loaded = True

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Class decorator: register ``cls`` under ``name`` (sets ``cls.name`` when absent)."""

        def decorator(cls: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = cls
            if isinstance(cls, type) and not getattr(cls, "name", None):
                cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self.load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        """The registered class, or a :class:`ConfigError` listing the known names."""
        self.load()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}"
            ) from None

    def options_model(self, name: str) -> type[pydantic.BaseModel]:
        """A pydantic model (extra keys forbidden) of the constructor options of ``name``."""
        if name not in self._validators:
            self._validators[name] = _options_model(self.get(name), f"{self.kind}:{name}")
        return self._validators[name]

    def validate(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce ``options`` for ``name``; errors name the bad option."""
        model = self.options_model(name)
        try:
            parsed = model.model_validate(options)
        except pydantic.ValidationError as exc:
            raise ConfigError(_format_validation(exc, f"{self.kind} {name!r}", model)) from None
        return {k: getattr(parsed, k) for k in options}

    def create(self, name: str, **options: Any) -> T:
        """Build ``name`` with validated ``options``."""
        return self.get(name)(**self.validate(name, options))


def constructor_options(factory: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """``(name, annotation, default)`` of every option of a class's constructor (or a factory).

    A class whose ``__init__`` takes ``**options`` and passes them to ``super().__init__``
    (the feature metrics share their extractor options this way) has its own options followed
    by those of the next ``__init__`` up its MRO, so one set of shared options is declared,
    annotated and validated in one place. ``default`` is ``inspect.Parameter.empty`` when
    required.
    """
    targets = [c.__init__ for c in factory.__mro__ if "__init__" in vars(c)] if isinstance(factory, type) else [factory]
    out: list[tuple[str, Any, Any]] = []
    seen: set[str] = set()
    for target in targets:
        sig = inspect.signature(target)
        try:
            hints = get_type_hints(target)
        except Exception:  # noqa: BLE001 - unresolved annotations fall back to Any
            hints = {}
        forwards = False
        for pname, param in sig.parameters.items():
            if param.kind == param.VAR_KEYWORD:
                forwards = True
            if pname == "self" or pname in seen or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            seen.add(pname)
            out.append((pname, hints.get(pname, Any), param.default))
        if not forwards:
            break
    return out


def _options_model(factory: Callable[..., Any], title: str) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for pname, annotation, default in constructor_options(factory):
        fields[pname] = (annotation, ... if default is inspect.Parameter.empty else default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(title.replace(":", "_"), __config__=config, **fields)


def _format_validation(exc: pydantic.ValidationError, what: str, model: type[pydantic.BaseModel]) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(options)"
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(model.model_fields)) or "none"
            parts.append(f"unknown option {loc!r} for {what} (known options: {known})")
        elif err["type"] == "missing":
            parts.append(f"missing option {loc!r} for {what}")
        else:
            parts.append(f"option {loc!r} of {what}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
