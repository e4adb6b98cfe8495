"""Strict JSON for every file and stream genloop writes.

JSON has no NaN or infinity; Python's ``json`` writes ``NaN`` / ``Infinity`` by default, which
strict readers (browsers, ``jq``, most languages' parsers) reject. :func:`dumps` writes a
non-finite number as ``null`` and records what it was in a flag next to it: the dict that holds
the value gains the key ``"nonfinite"`` mapping the value's path inside that dict (``"fid_se"``,
``"curve.3"`` for item 3 of the list ``curve``) to ``"nan"``, ``"inf"`` or ``"-inf"``. The
output is always written with ``allow_nan=False``. :func:`restore` (and :func:`loads`) put the
numbers back, so a round trip returns the document written.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: the key of the flag that names the non-finite values of a dict
NONFINITE = "nonfinite"


def _spelled(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _clean(value: Any, path: str, flags: dict[str, str]) -> Any:
    """``value`` with non-finite floats replaced by None; their paths go into ``flags``."""
    if isinstance(value, float) and not math.isfinite(value):
        flags[path] = _spelled(value)
        return None
    if isinstance(value, dict):
        return strict(value)
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{path}.{i}", flags) for i, v in enumerate(value)]
    return value


def strict(doc: Any) -> Any:
    """A copy of ``doc`` that strict JSON can hold: each dict flags its own non-finite values.

    Non-finite numbers outside any dict (a bare list of floats) have nowhere to be flagged and
    raise ``ValueError``.
    """
    if isinstance(doc, dict):
        flags: dict[str, str] = {}
        out = {k: _clean(v, str(k), flags) for k, v in doc.items() if k != NONFINITE}
        if flags:
            out[NONFINITE] = flags
        return out
    if isinstance(doc, (list, tuple)):
        orphans: dict[str, str] = {}
        out_list = [_clean(v, str(i), orphans) for i, v in enumerate(doc)]
        if orphans:
            raise ValueError(f"non-finite values outside a dict cannot be flagged: items {sorted(orphans)}")
        return out_list
    if isinstance(doc, float) and not math.isfinite(doc):
        raise ValueError(f"a bare non-finite number ({doc}) cannot be written as strict JSON")
    return doc


def dumps(doc: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`strict` ``(doc)`` with ``allow_nan=False`` (other arguments passed on).

    A ``default`` hook's output is made strict too (it may return numpy floats or arrays).
    """
    default = kwargs.pop("default", None)
    if default is not None:
        doc = json.loads(json.dumps(doc, default=default))  # resolve custom objects first
    return json.dumps(strict(doc), allow_nan=False, **kwargs)


def _put(node: Any, parts: list[str], value: float) -> None:
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def restore(doc: Any) -> Any:
    """Undo :func:`strict` in place: flagged ``null`` values become NaN / ±inf again; returns ``doc``."""
    if isinstance(doc, dict):
        for v in doc.values():
            restore(v)
        flags = doc.pop(NONFINITE, None)
        if isinstance(flags, dict):
            for path, spelled in flags.items():
                value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(spelled, math.nan)
                try:
                    if path in doc:  # a key of this dict (which may itself hold dots)
                        doc[path] = value
                    else:
                        _put(doc, str(path).split("."), value)
                except (KeyError, IndexError, ValueError, TypeError):
                    continue  # a flag that names nothing: leave the document as it is
    elif isinstance(doc, list):
        for v in doc:
            restore(v)
    return doc


def loads(text: str | bytes) -> Any:
    """``json.loads`` followed by :func:`restore` (also reads files written before the flag existed)."""
    return restore(json.loads(text))


__all__ = ["NONFINITE", "dumps", "loads", "restore", "strict"]
