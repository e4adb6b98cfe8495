"""Grids over any config key: ``{sweep: [...]}`` anywhere in a config makes each value a cell.

A config value written as ``{sweep: [a, b, c]}`` (e.g. ``model.name: {sweep: [gmm, kde]}``,
``data.n: {sweep: [250, 1000]}``, ``model.train.lr: {sweep: [1e-4, 3e-4]}``) is expanded into
one *cell* per combination of the swept values (the Cartesian product, in the order the keys
appear). ``loop.lambdas`` and ``loop.seeds`` stay lists: every cell runs each λ × seed.

Each cell is a plain config, validated on its own, and lives in a folder named by a readable
label plus a short hash of its resolved config (``name=gmm,n=250-3fa2c1d0``). The hash leaves
out ``loop.generations``, ``loop.lambdas``, ``loop.seeds``, ``tracking`` and ``resources``, so extending a
cell or adding λ values or seeds keeps its folder; any other change makes a new cell.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from genloop.config import SWEEP, find_sweeps, is_sweep  # noqa: F401  (the sweep syntax is the config's; re-exported)
from genloop.errors import ConfigError

#: Keys left out of a cell's identity (they may change on --resume without making a new cell).
_NOT_IDENTITY = (("loop", "generations"), ("loop", "lambdas"), ("loop", "seeds"), ("tracking",), ("resources",))


def _set(doc: Any, path: tuple[str, ...], value: Any) -> None:
    node = doc
    for key in path[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(path[-1])] = value
    else:
        node[path[-1]] = value


@dataclass(frozen=True)
class Cell:
    """One point of a grid: the swept values and the plain config they give."""

    values: tuple[tuple[str, Any], ...]
    doc: dict[str, Any]

    @property
    def label(self) -> str:
        """Readable: ``key=value`` of each swept key (the last part of its path), joined by ``,``."""
        parts = [f"{key.split('.')[-1]}={_short(value)}" for key, value in self.values]
        return ",".join(parts) or "cell"

    @property
    def key(self) -> str:
        """A short hash of the cell's resolved config (see the module docs)."""
        return identity_hash(self.doc)

    @property
    def folder(self) -> str:
        return f"{_plain(self.label)}-{self.key}"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name", value.get("kind", "dict")))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _plain(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._=+,-]+", "_", text)
    return text[:80].strip("._") or "cell"


def identity_hash(doc: dict[str, Any]) -> str:
    """8 hex digits of SHA-256 of ``doc`` without the keys that may change on resume."""
    doc = copy.deepcopy(doc)
    for path in _NOT_IDENTITY:
        node = doc
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


#: The most cells one grid may have: each is validated and checked before anything runs, so a
#: grid of millions (a few long sweeps) would spend hours planning before it says anything.
MAX_CELLS = 1000


def expand_grid(doc: dict[str, Any]) -> list[Cell]:
    """The cells of a config with sweeps (one cell, ``values=()``, when it has none).

    A grid of more than :data:`MAX_CELLS` cells is a :class:`ConfigError` given before any
    cell is built.
    """
    sweeps = find_sweeps(doc)
    if not sweeps:
        return [Cell((), copy.deepcopy(doc))]
    count = math.prod(len(values) for _, values in sweeps)
    if count > MAX_CELLS:
        sizes = " x ".join(str(len(values)) for _, values in sweeps)
        raise ConfigError(f"the grid has {count} cells ({sizes}); genloop runs at most {MAX_CELLS} cells per "
                          "experiment: split the sweeps over several configs")
    cells = []
    for combo in itertools.product(*(values for _, values in sweeps)):
        cell_doc = copy.deepcopy(doc)
        for (path, _), value in zip(sweeps, combo):
            _set(cell_doc, path, copy.deepcopy(value))
        cells.append(Cell(tuple((".".join(path), value) for (path, _), value in zip(sweeps, combo)), cell_doc))
    return cells
