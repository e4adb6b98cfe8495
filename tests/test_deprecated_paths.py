"""Old import paths keep working (with a DeprecationWarning) and give the very same objects."""

from __future__ import annotations

import importlib
import sys

import pytest


@pytest.mark.parametrize(("old", "new", "names"), [
    ("genloop.sweep.local", "genloop.sweep.runs", ["execute_run", "find_runs", "prepare_experiment", "RunSpec"]),
    ("genloop.sweep.ray_executor", "genloop.sweep.executors.ray", ["run_on_ray"]),
    ("genloop.metrics.eval_cli", "genloop.metrics.sets", ["evaluate", "open_source", "Source"]),
    ("genloop.theory.cli", "genloop.theory.config_theory", ["config_theory", "theory_text"]),
])
def test_old_paths_warn_and_reexport(old: str, new: str, names: list[str]) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        shim = importlib.import_module(old)
    target = importlib.import_module(new)
    for name in names:
        assert getattr(shim, name) is getattr(target, name)


def test_public_api_unchanged() -> None:
    import genloop

    for name in ("run_loop", "make_model", "make_data", "make_metric", "available_models", "GenerativeModel"):
        assert callable(getattr(genloop, name)), name
    from genloop.sweep import find_runs, real_data, run_experiment  # noqa: F401  (the sweep package's names)
