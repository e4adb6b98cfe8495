"""Name → class registries with validated construction.

Models, data sources and metrics are registered under a name and built from a config mapping
``{name: ..., **options}``. Options are validated against the constructor's signature with a
pydantic model built from its annotations, so a misspelt or mistyped option is an error that
names the option and the known ones, never a silently ignored ``**kwargs``.

A name comes from one of three places:

* **built-in** — a genloop module registers it with ``@register_model("name")`` (and the like);
* **entry point** — an installed package declares it under the entry-point group of the kind
  (``genloop.models``, ``genloop.data``, ``genloop.metrics``), ``name = "pkg.module:Class"``;
* **import path** — the name itself is ``"package.module:Class"``; the class is imported when
  the name is looked up, and its options are validated exactly like a built-in's.

A config that names code (an import path or an installed entry point) runs that code when it is
imported. Reading a stored config (``genloop check / show / report``) must not: it validates
inside :func:`code_imports_disabled`, where such names are accepted with their options unchecked
(they were validated when the run started).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar, get_type_hints

import pydantic

from genloop.errors import ConfigError

T = TypeVar("T")

#: ``package.module:Attribute`` (the attribute may be dotted: ``module:Outer.Inner``).
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

_CODE_IMPORTS: contextvars.ContextVar[bool] = contextvars.ContextVar("genloop_code_imports", default=True)


@contextlib.contextmanager
def code_imports_disabled() -> Iterator[None]:
    """Within this block no registry imports code a config names (import paths, entry points).

    Used when a stored config is read rather than run: such names are accepted and their options
    left unvalidated (they were validated when the run started, and are again when it resumes).
    """
    token = _CODE_IMPORTS.set(False)
    try:
        yield
    finally:
        _CODE_IMPORTS.reset(token)


def code_imports_allowed() -> bool:
    """Whether registries may import code named by configs here (see :func:`code_imports_disabled`)."""
    return _CODE_IMPORTS.get()


def is_import_path(name: str) -> bool:
    """Whether ``name`` has the form ``package.module:Attribute``."""
    return bool(IMPORT_PATH.match(name))


def import_object(spec: str, *, what: str) -> Any:
    """Import ``package.module:Attribute`` and return the attribute.

    Errors are a :class:`ConfigError` naming the missing module or attribute.
    """
    if not is_import_path(spec):
        raise ConfigError(f"{what} {spec!r} is not an import path of the form 'package.module:Name'")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise ConfigError(f"{what} {spec!r}: cannot import module {missing!r} (is it installed or on PYTHONPATH?)") from None
    except ImportError as exc:
        raise ConfigError(f"{what} {spec!r}: importing module {module_name!r} failed ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what} {spec!r}: {attr!r} in module {module_name!r} is not a class or function")
    return obj


@dataclass(frozen=True)
class Origin:
    """Where a registered name comes from: ``built-in`` (genloop's own), ``registered`` (another
    package's ``@register_...`` decorator), ``entry point`` or ``import path``."""

    kind: str
    #: the module (built-in), ``module:attr`` (entry point, import path)
    target: str
    #: the installed distribution that declares an entry point, with its version
    package: str = ""

    def __str__(self) -> str:
        if self.kind == "entry point":
            return f"entry point {self.target} (package {self.package})"
        return f"{self.kind} {self.target}"


class Registry(Generic[T]):
    """A registry of classes (or factories) of one kind, e.g. ``"model"``."""

    def __init__(
        self, kind: str, modules: Sequence[str] = (), *, group: str | None = None,
        base: type | None = None,
    ) -> None:
        self.kind = kind
        #: modules whose import registers entries, imported on the first look-up rather than
        #: at package import, so ``import genloop`` stays light (no torch).
        self.modules = list(modules)
        #: the entry-point group installed packages register under (``genloop.models``)
        self.group = group
        #: the class every entry of this kind subclasses (the protocol); classes named by import
        #: path or entry point are checked against it
        self.base = base
        self._loaded = False
        self._entries: dict[str, Callable[..., T]] = {}
        self._origins: dict[str, Origin] = {}
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None
        self._validators: dict[str, type[pydantic.BaseModel]] = {}

    def load(self) -> None:
        """Import every module of :attr:`modules` (once), which registers their entries."""
        if self._loaded:
            return
        for module in self.modules:
            importlib.import_module(module)
        self._loaded = True

    # ---- entry points ---------------------------------------------------------------------
    def entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        """The entry points of :attr:`group` by name (read once; nothing is imported).

        A name declared by two packages, or by a package and genloop itself, is a
        :class:`ConfigError` naming both.
        """
        if self._entry_points is not None:
            return self._entry_points
        self.load()
        found: dict[str, importlib.metadata.EntryPoint] = {}
        if self.group:
            for ep in importlib.metadata.entry_points(group=self.group):
                if ep.name in self._entries:
                    raise ConfigError(
                        f"{self.kind} {ep.name!r} is declared twice: {_ep_origin(ep)} clashes with the "
                        f"{self._origins[ep.name]}; rename one of them"
                    )
                if ep.name in found and found[ep.name].value != ep.value:
                    raise ConfigError(
                        f"{self.kind} {ep.name!r} is declared twice: {_ep_origin(found[ep.name])} clashes with "
                        f"{_ep_origin(ep)}; uninstall or rename one of them"
                    )
                found[ep.name] = ep
        self._entry_points = found
        return found

    def refresh(self) -> None:
        """Forget the entry points read so far (after installing a package in this process)."""
        for name in list(self._entries):
            if self._origins.get(name, Origin("", "")).kind == "entry point":
                del self._entries[name]
                self._validators.pop(name, None)
        self._entry_points = None

    def _load_entry_point(self, name: str) -> Callable[..., T]:
        ep = self.entry_points()[name]
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is bad input, named
            raise ConfigError(f"{self.kind} {name!r} ({_ep_origin(ep)}) cannot be loaded: {type(exc).__name__}: {exc}") from None
        self._check_protocol(obj, f"{self.kind} {name!r} ({_ep_origin(ep)})")
        if isinstance(obj, type) and not getattr(obj, "name", None):
            obj.name = name  # type: ignore[attr-defined]
        self._entries[name] = obj
        self._origins[name] = Origin("entry point", ep.value, _ep_package(ep))
        return obj

    def _check_protocol(self, obj: Any, what: str) -> None:
        if self.base is None:
            return
        if not (isinstance(obj, type) and issubclass(obj, self.base)):
            base = f"{self.base.__module__.split('.')[0]}.{self.base.__qualname__}"
            raise ConfigError(f"{what} is not a {self.kind} class: it must subclass {base}")
        missing = sorted(getattr(obj, "__abstractmethods__", ()))
        if missing:
            raise ConfigError(f"{what} does not implement {', '.join(missing)} (abstract in {self.base.__qualname__})")

    # ---- where names come from ----------------------------------------------------------
    def origin(self, name: str) -> Origin:
        """Where ``name`` comes from (nothing is imported for an entry point)."""
        self.load()
        if name in self._origins:
            return self._origins[name]
        if name in self.entry_points():
            ep = self.entry_points()[name]
            return Origin("entry point", ep.value, _ep_package(ep))
        if is_import_path(name):
            return Origin("import path", name)
        raise ConfigError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}")

    def name_of(self, obj: Any) -> str:
        """The name that looks ``obj`` (a class) up again: its registered name, else its import path."""
        self.load()
        name = getattr(obj, "name", "")
        if name and self._entries.get(name) is obj:
            return name
        return f"{obj.__module__}:{obj.__qualname__}"

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Class decorator: register ``cls`` under ``name`` (sets ``cls.name`` when absent)."""

        def decorator(cls: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered ({self._origins[name]})")
            self._entries[name] = cls
            module = getattr(cls, "__module__", "?")
            # a package may also call the decorator itself: then it is not genloop's own
            kind = "built-in" if module == "genloop" or module.startswith("genloop.") else "registered"
            self._origins[name] = Origin(kind, module)
            if isinstance(cls, type) and not getattr(cls, "name", None):
                cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    def builtin_names(self) -> list[str]:
        """The names genloop itself registers, sorted."""
        self.load()
        return sorted(n for n in self._entries if self._origins[n].kind == "built-in")

    def names(self) -> list[str]:
        """The registered names (built-in and installed entry points), sorted."""
        self.load()
        return sorted(set(self._entries) | set(self.entry_points()))

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries or (isinstance(name, str) and name in self.entry_points())

    def get(self, name: str) -> Callable[..., T]:
        """The class named ``name``: registered, an installed entry point, or an import path.

        Unknown names are a :class:`ConfigError` listing the known ones; an import path that
        cannot be imported names the missing module or attribute.
        """
        self.load()
        if name in self._entries:
            return self._entries[name]
        if name in self.entry_points():
            return self._load_entry_point(name)
        if is_import_path(name):
            obj = import_object(name, what=self.kind)
            self._check_protocol(obj, f"{self.kind} {name!r}")
            if isinstance(obj, type) and not getattr(obj, "name", None):
                obj.name = name  # type: ignore[attr-defined]
            return obj
        raise ConfigError(
            f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())} "
            "(or an import path 'package.module:Class')"
        )

    def options_model(self, name: str) -> type[pydantic.BaseModel]:
        """A pydantic model (extra keys forbidden) of the constructor options of ``name``."""
        factory = self.get(name)
        cached = self._validators.get(name)
        if cached is None or cached.__genloop_factory__ is not factory:  # type: ignore[attr-defined]
            cached = _options_model(factory, f"{self.kind}:{name}")
            cached.__genloop_factory__ = factory  # type: ignore[attr-defined]
            self._validators[name] = cached
        return cached

    def validate(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce ``options`` for ``name``; errors name the bad option.

        Inside :func:`code_imports_disabled` a name that would import code (an import path or
        an entry point not loaded yet, perhaps of a package not installed here) is accepted
        and ``options`` are returned as given: a stored config was validated when its run
        started.
        """
        if not code_imports_allowed() and name not in self._builtin_or_loaded():
            # an import path or a package's entry point (perhaps not installed here): a stored
            # config was validated when its run started
            return dict(options)
        model = self.options_model(name)
        try:
            parsed = model.model_validate(options)
        except pydantic.ValidationError as exc:
            raise ConfigError(_format_validation(exc, f"{self.kind} {name!r}", model)) from None
        return {k: getattr(parsed, k) for k in options}

    def _builtin_or_loaded(self) -> set[str]:
        self.load()
        return set(self._entries)

    def create(self, name: str, **options: Any) -> T:
        """Build ``name`` with validated ``options``."""
        return self.get(name)(**self.validate(name, options))


def _ep_package(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown package"


def _ep_origin(ep: importlib.metadata.EntryPoint) -> str:
    return f"entry point {ep.value} of package {_ep_package(ep)}"


def validate_options(factory: Callable[..., Any], options: dict[str, Any], what: str,
                     *, skip: Sequence[str] = ()) -> dict[str, Any]:
    """Validate ``options`` against ``factory``'s annotated signature (as registries do), leaving
    out the parameters in ``skip``; errors name the bad option and the known ones."""
    model = _options_model(factory, what, skip=skip)
    try:
        parsed = model.model_validate(options)
    except pydantic.ValidationError as exc:
        raise ConfigError(_format_validation(exc, what, model)) from None
    return {k: getattr(parsed, k) for k in options}


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


def _options_model(factory: Callable[..., Any], title: str, *, skip: Sequence[str] = ()) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for pname, annotation, default in constructor_options(factory):
        if pname in skip:
            continue
        fields[pname] = (annotation, ... if default is inspect.Parameter.empty else default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(re.sub(r"\W", "_", title), __config__=config, **fields)


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
