"""What the planner hands an executor: one run (λ, seed, folder, cell) and its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from genloop.config import RunConfig, format_lambda

if TYPE_CHECKING:
    from genloop.loop.engine import GenerationRecord

#: Called after each finished generation of a run executed in this process.
ProgressFn = Callable[["RunSpec", "GenerationRecord"], None]


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment (``cell`` names its grid cell, empty outside grids)."""

    lam: float
    seed: int
    path: Path
    cell: str = ""

    @property
    def label(self) -> str:
        run = f"lam={format_lambda(self.lam)} seed={self.seed}"
        return f"{self.cell} {run}" if self.cell else run


#: One unit of work for an executor: a run and the (cell's) config it runs.
Task = tuple[RunConfig, RunSpec]


def run_folder_name(lam: float, seed: int) -> str:
    return f"lam={format_lambda(lam)}/seed={seed}"



__all__ = ["ProgressFn", "RunSpec", "Task", "run_folder_name"]
