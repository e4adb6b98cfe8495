"""Run folders: one folder per (λ, seed) run.

Layout::

    RUN/
      config.yaml          the resolved configuration of this run
      status.json          {"state": "running"|"completed", "last_generation": t, ...}
      metrics.jsonl        one JSON line of metrics per completed generation
      timings.jsonl        wall times per generation (kept apart so metrics are reproducible)
      checkpoints/gen_0003/model.safetensors + model.json
      samples/gen_0003.npy evaluation samples kept for plots and grids
      grids/gen_0003.png   a grid of 64 evaluation samples (image data only)
      synthetic/gen_0003.npy synthetic sets (only for the accumulate schemes, needed to resume)
      .lock                held (flock) by the process writing the run

Every file is written to a temporary name and moved into place with ``os.replace``, and a
generation counts as completed only once ``status.json`` says so (it is written last), so a
kill at any moment leaves a folder that resumes from its last completed generation.
Loading never unpickles: arrays are safetensors or ``.npy`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from genloop.errors import RunLockedError
from genloop.loop.engine import GenerationRecord, LoopState
from genloop.models.io import load_model, save_model

try:  # POSIX advisory locks; released by the kernel when the process dies (even SIGKILL)
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, np.ascontiguousarray(arr), allow_pickle=False)
    os.replace(tmp, path)


def _clean(value: float) -> float | None:
    """JSON has no NaN/inf: store non-finite values as null."""
    return float(value) if math.isfinite(value) else None


class RunStore:
    """The folder of one run; use as a context manager to hold its lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fh: Any = None

    # ---- locking ------------------------------------------------------------------------
    def __enter__(self) -> RunStore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the run's lock, or raise :class:`RunLockedError` naming the holder."""
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / ".lock", "a+")
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                fh.close()
                raise RunLockedError(
                    f"run folder {self.path} is being written by another process ({holder}); "
                    "wait for it to finish or choose another --out"
                ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        self._lock_fh = fh

    def release(self) -> None:
        """Release the lock (the kernel also releases it when the process dies)."""
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    # ---- status and config ----------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.path / "status.json").exists()

    def status(self) -> dict[str, Any]:
        """The status document (``{}`` for a folder that has none)."""
        p = self.path / "status.json"
        return json.loads(p.read_text()) if p.exists() else {}

    @property
    def last_generation(self) -> int:
        """The last completed generation, or -1 when none is."""
        return int(self.status().get("last_generation", -1))

    def write_status(self, state: str, last_generation: int, **extra: Any) -> None:
        doc = {"state": state, "last_generation": last_generation, "updated": time.time(), **extra}
        atomic_write_text(self.path / "status.json", json.dumps(doc, indent=1))

    def write_config(self, config: dict[str, Any]) -> None:
        import yaml

        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        import yaml

        return yaml.safe_load((self.path / "config.yaml").read_text())

    # ---- generations ----------------------------------------------------------------------
    def _gen(self, sub: str, generation: int, suffix: str = "") -> Path:
        return self.path / sub / f"gen_{generation:04d}{suffix}"

    def write_generation(
        self, record: GenerationRecord, *, keep_pool: bool, keep_samples: int, keep_checkpoints: str = "all"
    ) -> None:
        """Persist one completed generation; ``status.json`` is updated last."""
        t = record.generation
        ckpt = self._gen("checkpoints", t)
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        save_model(record.model, tmp)
        if ckpt.exists():
            shutil.rmtree(ckpt)
        os.replace(tmp, ckpt)
        if keep_pool and record.synthetic is not None:
            (self.path / "synthetic").mkdir(exist_ok=True)
            _atomic_save_npy(self._gen("synthetic", t, ".npy"), record.synthetic)
        if keep_samples and record.samples is not None:
            (self.path / "samples").mkdir(exist_ok=True)
            kept = record.samples[:keep_samples]
            if kept.ndim > 2:  # images: float32 is ample for plots and grids, half the disk
                kept = kept.astype(np.float32)
            _atomic_save_npy(self._gen("samples", t, ".npy"), kept)
        if record.samples is not None and record.samples.ndim == 4:  # (n, C, H, W) images
            self.write_grid(t, record.samples[:64])
        line = {"generation": t, "n_real": record.n_real, "n_synthetic": record.n_synthetic}
        line.update({k: _clean(v) for k, v in record.metrics.items()})
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
        with open(self.path / "timings.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"generation": t, "seconds": record.seconds, **record.timings}) + "\n")
        self.write_status("running", t)
        if keep_checkpoints == "last" and t > 0:
            old = self._gen("checkpoints", t - 1)
            if old.exists():
                shutil.rmtree(old)

    def write_grid(self, generation: int, images: np.ndarray) -> Path:
        """Save an 8-wide PNG grid of ``images`` (in [-1, 1]) as ``grids/gen_XXXX.png``."""
        from genloop.report.grids import save_sample_grid

        (self.path / "grids").mkdir(exist_ok=True)
        path = self._gen("grids", generation, ".png")
        tmp = path.with_name(f".{path.name}.tmp.png")
        save_sample_grid(images, tmp, nrow=8, scale=max(1, 64 // images.shape[-1]))
        os.replace(tmp, path)
        return path

    def truncate_to(self, generation: int) -> None:
        """Drop every trace of generations after ``generation`` (work of a killed process)."""
        for name in ("metrics.jsonl", "timings.jsonl"):
            p = self.path / name
            if p.exists():
                keep = [ln for ln in p.read_text().splitlines() if ln.strip() and json.loads(ln)["generation"] <= generation]
                atomic_write_text(p, "".join(ln + "\n" for ln in keep))
        for sub in ("checkpoints", "samples", "synthetic", "grids"):
            folder = self.path / sub
            if not folder.exists():
                continue
            for entry in folder.iterdir():
                stem = entry.name.split(".")[0]
                if not stem.startswith("gen_"):
                    continue
                if entry.name.endswith(".tmp") or int(stem[4:]) > generation:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def load_state(self, generation: int, *, keep_pool: bool) -> LoopState:
        """The loop state after ``generation`` (model checkpoint and synthetic pool)."""
        model = load_model(self._gen("checkpoints", generation))
        pool: list[np.ndarray] = []
        if keep_pool:
            pool = [
                np.load(self._gen("synthetic", t, ".npy"), allow_pickle=False) for t in range(1, generation + 1)
            ]
        return LoopState(generation=generation, model=model, pool=pool)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-generation metric lines (non-finite values come back as NaN)."""
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return []
        rows = [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
        return [{k: (math.nan if v is None else v) for k, v in row.items()} for row in rows]

    def read_timings(self) -> list[dict[str, Any]]:
        p = self.path / "timings.jsonl"
        return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()] if p.exists() else []

    def load_samples(self, generation: int) -> np.ndarray:
        return np.load(self._gen("samples", generation, ".npy"), allow_pickle=False)

    def load_model(self, generation: int) -> Any:
        return load_model(self._gen("checkpoints", generation))
