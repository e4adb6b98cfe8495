"""Progress of an experiment: one bar over the work to do, not over generation counts.

A generation's *work* is what it trains on and draws, counted in samples: for the neural
families the training budget (``train.samples`` or ``train.epochs`` × the training set for
generation 0, ``train.finetune_samples`` for a warm-started generation when set), for the
classical ones the rows fitted, plus the synthetic and evaluation samples drawn. The bar's
rate and ETA therefore stay honest when generation 0 of a neural model is a hundred times
longer than a fine-tune. After ``--resume`` the bar starts at the work already done. When
stderr is not a terminal there is no bar but one line per finished generation (or run).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genloop.config import RunConfig
    from genloop.loop.engine import GenerationRecord
    from genloop.sweep.experiment import Experiment
    from genloop.sweep.spec import RunSpec


def _linear_work(cfg: RunConfig, lam: float, generation: int) -> tuple[float, float]:
    """(a, b) with work(t) = a + b·t for the generation(s) of kind ``generation`` (0, or >= 1)."""
    from genloop.loop.schemes import synthetic_count

    n = cfg.data.n
    n_eval = (cfg.loop.n_eval or cfg.data.n_heldout or n) if cfg.metrics else 0
    if generation == 0:
        m, n_real, accumulate = 0, n, False
    else:
        m, n_real = synthetic_count(lam, n), (0 if math.isinf(lam) else n)
        accumulate = cfg.loop.scheme == "accumulate"
    rows_a, rows_b = (n_real, m) if accumulate else (n_real + m, 0)
    train = cfg.model.options.get("train")
    if isinstance(train, dict):
        if generation > 0 and cfg.loop.retrain == "finetune" and train.get("finetune_samples"):
            return float(train["finetune_samples"]) + m + n_eval, 0.0
        if train.get("samples"):
            return float(train["samples"]) + m + n_eval, 0.0
        if train.get("epochs"):
            e = float(train["epochs"])
            return e * rows_a + m + n_eval, e * rows_b
    return float(rows_a + m + n_eval), float(rows_b)


def run_work(cfg: RunConfig, lam: float, first: int, last: int) -> float:
    """Σ of the work of generations ``first`` … ``last`` of the run (cfg, λ), in closed form
    (a config may ask for 10⁹ generations: this never loops over them)."""
    total = 0.0
    if first <= 0 <= last:
        a, _ = _linear_work(cfg, lam, 0)
        total += a
    s, e = max(first, 1), last
    if e >= s:
        a, b = _linear_work(cfg, lam, 1)
        count = e - s + 1
        total += count * a + b * (s + e) * count / 2
    return total


def generation_work(cfg: RunConfig, lam: float, generation: int) -> float:
    """The work of one generation of the run (cfg, λ), in samples (see the module docs)."""
    return run_work(cfg, lam, generation, generation)


def progress_line(text: str) -> None:
    """One progress line on stderr, through tqdm so it never tears a bar; flushed at once (a
    file or pipe is block-buffered, and a line that arrives minutes late is no progress)."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)
    sys.stderr.flush()


_line = progress_line


@dataclass
class _Run:
    cfg: Any
    lam: float
    done: int  # generations completed before this command
    failed: bool = False


@dataclass
class SweepProgress:
    """The bar of ``genloop run`` (see the module docs)."""

    total: float
    done: float
    runs: int
    complete: int
    parallel: bool
    quiet: bool
    plain: bool
    slots: int = 1
    complete_at_start: int = 0
    per_run: dict[Path, _Run] = field(default_factory=dict)
    _bar: Any = None

    @classmethod
    def for_experiment(cls, exp: Experiment, out: Path, *, resume: bool, parallel: bool, quiet: bool,
                       plain: bool, slots: int = 1) -> SweepProgress:
        from genloop.errors import GenloopError
        from genloop.store import RunStore
        from genloop.sweep.runs import plan_runs

        per_run: dict[Path, _Run] = {}
        total = done = 0.0
        complete = 0
        for plan in exp.cells:
            base = out / plan.folder if exp.is_grid else out
            for spec in plan_runs(plan.cfg, base):
                G = plan.cfg.loop.generations
                last = -1
                if resume:
                    try:
                        last = RunStore(spec.path).last_generation
                    except GenloopError:  # damaged: the run itself will say so
                        last = -1
                last = min(last, G)
                total += run_work(plan.cfg, spec.lam, 0, G)
                done += run_work(plan.cfg, spec.lam, 0, last)
                complete += last >= G
                per_run[spec.path] = _Run(plan.cfg, spec.lam, last + 1)
        self = cls(total=total, done=done, runs=len(per_run), complete=complete, parallel=parallel, quiet=quiet,
                   plain=plain, slots=slots, complete_at_start=complete, per_run=per_run)
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=done, desc="work", unit="sample", unit_scale=True, file=sys.stderr,
                         dynamic_ncols=True, disable=True if (quiet or plain) else None, leave=True)
        self._postfix()
        return self

    @property
    def nothing_to_do(self) -> bool:
        """Every run was already complete when the command started."""
        return self.complete_at_start == self.runs

    def _postfix(self) -> None:
        left = self.runs - self.complete
        running = min(left, self.slots) if self.parallel else min(left, 1)
        self._bar.set_postfix_str(f"runs {self.complete}/{self.runs} done, {running} running, {left - running} queued")

    def generation_done(self, spec: RunSpec, record: GenerationRecord) -> None:
        """Called after each stored generation (runs executing in this process)."""
        run = self.per_run.get(spec.path)
        if run is None:
            return
        work = generation_work(run.cfg, run.lam, record.generation)
        run.done = record.generation + 1
        if run.done == run.cfg.loop.generations + 1:
            self.complete += 1
        self._bar.update(work)
        self._postfix()
        if self.plain:
            _line(f"genloop: {spec.label} generation {record.generation}/{run.cfg.loop.generations} done "
                  f"in {record.seconds:.1f} s")

    def run_done(self, spec: RunSpec) -> None:
        """Called when a run finishes (every executor)."""
        run = self.per_run.get(spec.path)
        if run is None:
            return
        G = run.cfg.loop.generations
        if run.done <= G:  # finished elsewhere (a worker process or a Ray task)
            self._bar.update(run_work(run.cfg, run.lam, run.done, G))
            run.done = G + 1
            self.complete += 1
            self._postfix()
        if self.plain and self.parallel:
            _line(f"genloop: {spec.label} finished ({self.complete}/{self.runs} runs)")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
