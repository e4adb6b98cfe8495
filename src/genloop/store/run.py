"""Run folders: one folder per (λ, seed) run.

Layout::

    RUN/
      config.yaml          the resolved configuration of this run
      status.json          state, last completed generation, the manifest's last chain value
      manifest.jsonl       checksums of each generation's metrics line and files (below)
      metrics.jsonl        one JSON line of metrics per completed generation
      timings.jsonl        wall times per generation (kept apart so metrics are reproducible)
      checkpoints/gen_0003/model.safetensors + model.json
      samples/gen_0003.npy evaluation samples kept for plots and grids
      grids/gen_0003.png   a grid of 64 evaluation samples (image data only)
      synthetic/gen_0003.npy synthetic sets (only for the accumulate schemes, needed to resume)
      .lock                held (flock) by the process writing the run

Every file is written to a unique temporary name and moved into place with ``os.replace``,
and a generation counts as completed only once ``status.json`` says so (it is written last),
so a kill at any moment leaves a folder that resumes from its last completed generation.

``manifest.jsonl`` holds one line per completed generation: the SHA-256 of its metrics line and
of every file it wrote, chained (each line's ``chain`` hashes the previous line's ``chain`` and
its own content) so that ``status.json``, which records the last chain value, vouches for the
whole history at a constant cost per generation. :meth:`RunStore.verify` checks a folder against it
without changing anything, and :meth:`RunStore.recover` (what a resume calls) rolls back to the
last generation whose files are all intact, saying so, so damage never turns into a silent
exit with missing or different data. Loading never unpickles: arrays are safetensors or
``.npy`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genloop._fs import atomic_save_npy, atomic_write_text, sha256_file, sha256_text
from genloop.errors import DataError, DiskFullError, RunLockedError
from genloop.loop.engine import GenerationRecord, LoopState
from genloop.models.io import load_model, save_model

try:  # POSIX advisory locks; released by the kernel when the process dies (even SIGKILL)
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = ["RunStore", "FolderLock", "RunCheck", "atomic_write_text", "is_disk_full"]

#: The states a run's ``status.json`` can hold.
STATES = ("running", "completed", "stopped")


def _clean(value: float) -> float | None:
    """JSON has no NaN/inf: store non-finite values as null."""
    return float(value) if math.isfinite(value) else None


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is the operating system saying the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class FolderLock:
    """An exclusive ``flock`` on ``FOLDER/NAME`` that records its holder (pid, host, time).

    The kernel releases the lock when the holding process dies, even by SIGKILL, so a lock
    left by a dead process is never in force: it is taken over and its old holder is logged.
    (Across machines this relies on the shared file system honouring ``flock``, as NFSv4 and
    Lustre do.)
    """

    def __init__(self, folder: Path, name: str = ".lock", *, what: str = "run folder") -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.what = what
        self._fh: Any = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunLockedError` naming the holder."""
        if self.path.is_dir():
            raise RunLockedError(f"{self.path} is a folder, not a lock file; remove it and try again")
        try:
            fh = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise RunLockedError(f"cannot open the lock file {self.path}: {exc.strerror or exc}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "an unknown process"
                fh.close()
                raise RunLockedError(
                    f"{self.what} {self.folder} is being written by another process ({holder}); "
                    "wait for it to finish or choose another --out"
                ) from None
        fh.seek(0)
        previous = fh.read().strip()
        if previous:
            log.debug("%s: taking over the lock last held by %s", self.folder, previous)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Release the lock (the kernel also releases it when the process dies)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def is_held_elsewhere(self) -> bool:
        """Whether another process holds the lock now (a live writer); changes nothing."""
        if fcntl is None or not self.path.is_file():
            return False
        with open(self.path, "a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class RunCheck:
    """The state of a run folder as :meth:`RunStore.verify` found it (nothing is changed).

    ``last_generation`` is what ``status.json`` claims; ``intact_generation`` the last
    generation whose metrics line and files (and those of every earlier generation) match the
    manifest; ``problems`` names each damaged or missing piece.
    """

    path: Path
    state: str
    last_generation: int
    intact_generation: int
    problems: list[str] = field(default_factory=list)
    #: False for folders written before checksums were recorded (nothing to verify against).
    verified: bool = True
    #: The manifest's chain value after ``intact_generation`` (what ``status.json`` should hold).
    chain: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and self.intact_generation == self.last_generation


class RunStore:
    """The folder of one run; use as a context manager to hold its lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = FolderLock(self.path)

    # ---- locking ------------------------------------------------------------------------
    def __enter__(self) -> RunStore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the run's lock, or raise :class:`RunLockedError` naming the holder."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()

    def release(self) -> None:
        """Release the lock (the kernel also releases it when the process dies)."""
        self._lock.release()

    def is_being_written(self) -> bool:
        """Whether a live process holds this run's lock."""
        return self._lock.is_held_elsewhere()

    # ---- status and config ----------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.path / "status.json").exists()

    def status(self) -> dict[str, Any]:
        """The status document (``{}`` for a folder that has none); a damaged one is a DataError."""
        p = self.path / "status.json"
        if not p.exists():
            return {}
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("last_generation", -1), int):
                raise ValueError("not a status document")
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise DataError(
                f"{p} is damaged ({exc}); without it the run cannot be verified. Restore it, or delete "
                f"the run folder {self.path} to redo this run"
            ) from None
        return doc

    @property
    def last_generation(self) -> int:
        """The last completed generation, or -1 when none is."""
        return int(self.status().get("last_generation", -1))

    def write_status(self, state: str, last_generation: int, **extra: Any) -> None:
        """Rewrite ``status.json`` (atomically), keeping the manifest's chain and options."""
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        old = self.status() if self.exists else {}
        doc = {"state": state, "last_generation": last_generation, "updated": time.time()}
        for key in ("chain", "checkpoints"):
            if key in old and key not in extra:
                doc[key] = old[key]
        doc.update(extra)
        if last_generation < 0:
            doc.pop("chain", None)
        atomic_write_text(self.path / "status.json", json.dumps(doc, indent=1))

    def mark_stopped(self, reason: str) -> None:
        """Record that the writer stopped before finishing (Ctrl-C, a signal, a full disk)."""
        if self.exists:
            try:
                self.write_status("stopped", self.last_generation, reason=reason)
            except OSError:  # e.g. the disk is full: the previous status stays, which is consistent
                log.debug("could not mark %s as stopped", self.path, exc_info=True)

    def write_config(self, config: dict[str, Any]) -> None:
        import yaml

        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        from genloop.config import read_yaml

        return read_yaml(self.path / "config.yaml", what="run config")

    # ---- generations ----------------------------------------------------------------------
    def _gen(self, sub: str, generation: int, suffix: str = "") -> Path:
        return self.path / sub / f"gen_{generation:04d}{suffix}"

    def write_generation(
        self, record: GenerationRecord, *, keep_pool: bool, keep_samples: int, keep_checkpoints: str = "all"
    ) -> None:
        """Persist one completed generation; ``status.json`` (with the files' checksums) last.

        A full disk raises :class:`DiskFullError` naming the folder; the run's status then
        still says the previous generation, and ``--resume`` redoes this one.
        """
        try:
            self._write_generation(record, keep_pool=keep_pool, keep_samples=keep_samples,
                                   keep_checkpoints=keep_checkpoints)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._drop_partial_generation(record.generation)
            free = shutil.disk_usage(self.path).free
            raise DiskFullError(
                f"the disk holding {self.path} is full (writing generation {record.generation}; "
                f"{_mb(free)} free, one generation here takes about {_mb(self.generation_bytes(record.generation - 1))}); "
                "finished generations are kept: free some space and continue with --resume"
            ) from None

    def _write_generation(self, record: GenerationRecord, *, keep_pool: bool, keep_samples: int,
                          keep_checkpoints: str) -> None:
        t = record.generation
        files: dict[str, str] = {}
        ckpt = self._gen("checkpoints", t)
        ckpt.parent.mkdir(exist_ok=True)
        tmp = ckpt.with_name(f".{ckpt.name}.{os.getpid()}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        save_model(record.model, tmp)
        if ckpt.exists():
            shutil.rmtree(ckpt)
        os.replace(tmp, ckpt)
        for f in sorted(ckpt.iterdir()):
            files[f.relative_to(self.path).as_posix()] = sha256_file(f)
        if keep_pool and record.synthetic is not None:
            (self.path / "synthetic").mkdir(exist_ok=True)
            files[self._put_npy("synthetic", t, record.synthetic)] = ""
        if keep_samples and record.samples is not None:
            (self.path / "samples").mkdir(exist_ok=True)
            kept = record.samples[:keep_samples]
            if kept.ndim > 2:  # images: float32 is ample for plots and grids, half the disk
                kept = kept.astype(np.float32)
            files[self._put_npy("samples", t, kept)] = ""
        if record.samples is not None and record.samples.ndim == 4:  # (n, C, H, W) images
            files[self.write_grid(t, record.samples[:64]).relative_to(self.path).as_posix()] = ""
        losses = getattr(record.model, "losses_", None)
        if losses is not None and len(losses) > 1:  # neural families: the training-loss curve
            (self.path / "losses").mkdir(exist_ok=True)
            path = self._gen("losses", t, ".csv")
            atomic_write_text(path, loss_table(losses))
            files[path.relative_to(self.path).as_posix()] = ""
        files = {name: digest or sha256_file(self.path / name) for name, digest in files.items()}
        line = {"generation": t, "n_real": record.n_real, "n_synthetic": record.n_synthetic}
        line.update({k: _clean(v) for k, v in record.metrics.items()})
        text = json.dumps(line)
        self._append_line("metrics.jsonl", text, t)
        self._append_line("timings.jsonl",
                          json.dumps({"generation": t, "seconds": record.seconds, **record.timings}), t)
        prev_chain = self.status().get("chain", "") if t > 0 else ""
        entry = {"generation": t, "metrics": sha256_text(text), "files": files}
        chain = _chain(prev_chain, entry)
        self._append_line("manifest.jsonl", json.dumps({**entry, "chain": chain}), t)
        self.write_status("running", t, chain=chain, checkpoints=keep_checkpoints)
        if keep_checkpoints == "last" and t > 0:
            old = self._gen("checkpoints", t - 1)
            if old.exists():
                shutil.rmtree(old)

    def _put_npy(self, sub: str, generation: int, arr: np.ndarray) -> str:
        path = self._gen(sub, generation, ".npy")
        atomic_save_npy(path, arr)
        return path.relative_to(self.path).as_posix()

    def _append_line(self, name: str, text: str, generation: int) -> None:
        """Append one line; a torn tail left by a killed writer is cut off first."""
        p = self.path / name
        lines = _read_lines(p)
        if len(lines) != generation or _has_torn_tail(p):  # a killed writer's line: keep generations < t
            _rewrite_lines(p, lines[:generation])
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _drop_partial_generation(self, generation: int) -> None:
        try:
            self.truncate_to(generation - 1)
        except OSError:
            log.debug("could not clean up %s after a failed write", self.path, exc_info=True)

    def generation_bytes(self, generation: int) -> int:
        """Bytes the files of ``generation`` take on disk (0 when it has none)."""
        total = 0
        for sub, suffix in (("checkpoints", ""), ("samples", ".npy"), ("synthetic", ".npy"), ("grids", ".png")):
            p = self._gen(sub, generation, suffix)
            if p.is_dir():
                total += sum(f.stat().st_size for f in p.iterdir() if f.is_file())
            elif p.is_file():
                total += p.stat().st_size
        return total

    def write_grid(self, generation: int, images: np.ndarray) -> Path:
        """Save an 8-wide PNG grid of ``images`` (in [-1, 1]) as ``grids/gen_XXXX.png``."""
        from genloop._fs import atomic_write_with
        from genloop.store.grids import save_sample_grid

        (self.path / "grids").mkdir(exist_ok=True)
        path = self._gen("grids", generation, ".png")
        atomic_write_with(path, lambda tmp: save_sample_grid(images, tmp, nrow=8, scale=max(1, 64 // images.shape[-1])),
                          suffix=".tmp.png")
        return path

    def truncate_to(self, generation: int) -> None:
        """Drop every trace of generations after ``generation`` (work of a killed process)."""
        for name in ("metrics.jsonl", "timings.jsonl", "manifest.jsonl"):
            p = self.path / name
            if p.exists():
                lines = _read_lines(p)
                if len(lines) > generation + 1 or _has_torn_tail(p):
                    _rewrite_lines(p, lines[: generation + 1])
        for sub in ("checkpoints", "samples", "synthetic", "grids", "losses"):
            folder = self.path / sub
            if not folder.exists():
                continue
            for entry in folder.iterdir():
                if entry.name.startswith("."):  # a temporary file or folder of a killed writer
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                    continue
                stem = entry.name.split(".")[0]
                if stem.startswith("gen_") and stem[4:].isdigit() and int(stem[4:]) > generation:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        training = self.path / "training"  # checkpoints inside a generation: only the next one's count
        if training.is_dir():
            for entry in training.iterdir():
                stem = entry.name
                if not (stem.startswith("gen_") and stem[4:].isdigit() and int(stem[4:]) == generation + 1):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        for entry in self.path.iterdir():  # temporary files of a killed writer (status, config)
            if entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp"):
                entry.unlink()

    # ---- verification and recovery -----------------------------------------------------------
    def verify(self) -> RunCheck:
        """Check every completed generation against the manifest; change nothing."""
        status = self.status()
        last = int(status.get("last_generation", -1))
        state = str(status.get("state", "new" if not status else "unknown"))
        if state == "running" and not self.is_being_written():
            state = "interrupted"
        if "chain" not in status and last >= 0:  # written before checksums existed: presence only
            ok = last if (self._gen("checkpoints", last) / "model.json").exists() else -1
            problems = [] if ok == last else [f"checkpoint of generation {last} is missing"]
            return RunCheck(self.path, state, last, ok, problems, verified=False)
        metrics = _read_lines(self.path / "metrics.jsonl")
        manifest = _read_lines(self.path / "manifest.jsonl")
        keep_last = status.get("checkpoints") == "last"
        problems: list[str] = []
        intact, chain, chains = -1, "", [""]
        for t in range(last + 1):
            entry, chain, bad = self._check_generation(t, manifest, metrics, chain, skip_checkpoint=keep_last and t < last)
            if bad:
                problems.extend(bad)
                break
            intact = t
            chains.append(chain)
        if intact == last and last >= 0 and chain != status.get("chain"):
            problems.append("manifest.jsonl does not match status.json (chain value differs)")
            intact = last - 1
        return RunCheck(self.path, state, last, intact, problems, chain=chains[intact + 1])

    def _check_generation(self, t: int, manifest: list[str], metrics: list[str], chain: str, *,
                          skip_checkpoint: bool) -> tuple[dict[str, Any] | None, str, list[str]]:
        if t >= len(manifest):
            return None, chain, [f"generation {t}: its line in manifest.jsonl is missing"]
        try:
            doc = json.loads(manifest[t])
            stored = doc.pop("chain")
        except (ValueError, KeyError, AttributeError):
            return None, chain, [f"generation {t}: its line in manifest.jsonl is damaged"]
        chain = _chain(chain, doc)
        if stored != chain or doc.get("generation") != t:
            return None, chain, [f"generation {t}: its line in manifest.jsonl is damaged (checksum chain breaks)"]
        problems = []
        if t >= len(metrics):
            problems.append(f"generation {t}: its line in metrics.jsonl is missing")
        elif sha256_text(metrics[t]) != doc.get("metrics"):
            problems.append(f"generation {t}: its line in metrics.jsonl differs from what was written")
        for name, digest in doc.get("files", {}).items():
            if skip_checkpoint and name.startswith("checkpoints/"):
                continue  # checkpoints: last keeps only the newest generation's checkpoint
            p = self.path / name
            if not p.is_file():
                problems.append(f"generation {t}: {name} is missing")
            elif sha256_file(p) != digest:
                problems.append(f"generation {t}: {name} is damaged (checksum differs)")
        return doc, chain, problems

    def recover(self) -> int:
        """Roll the folder back to its last intact generation and return it (-1: start over).

        Called under the run's lock before a resume. Damage is logged as a warning naming each
        problem and the generation the run continues from; nothing intact is rewritten.
        """
        check = self.verify()
        if not check.ok:
            for problem in check.problems:
                log.warning("%s: %s", self.path, problem)
            log.warning("%s: rolling back from generation %d to %s", self.path, check.last_generation,
                        check.intact_generation if check.intact_generation >= 0 else "the start")
        target = check.intact_generation
        if target >= 0 and not (self._gen("checkpoints", target) / "model.json").exists():
            # checkpoints: last and damage before the last generation: nothing to continue from
            log.warning("%s: no checkpoint of generation %d is kept; the run starts over", self.path, target)
            target = -1
        self.truncate_to(target)
        if target != check.last_generation:
            self.write_status("stopped", target, chain=check.chain, rolled_back_from=check.last_generation)
        return target

    def load_state(self, generation: int, *, keep_pool: bool) -> LoopState:
        """The loop state after ``generation`` (model checkpoint and synthetic pool)."""
        model = load_model(self._gen("checkpoints", generation))
        pool: list[np.ndarray] = []
        if keep_pool:
            pool = [
                np.load(self._gen("synthetic", t, ".npy"), allow_pickle=False) for t in range(1, generation + 1)
            ]
        return LoopState(generation=generation, model=model, pool=pool)

    # ---- reading ------------------------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-generation metric lines (non-finite values come back as NaN).

        Only completed generations are read (a torn line of a killed writer is skipped); a line
        that is not JSON is a :class:`DataError` naming the file and line.
        """
        rows = _parse_lines(self.path / "metrics.jsonl", limit=self._limit())
        return [{k: (math.nan if v is None else v) for k, v in row.items()} for row in rows]

    def read_timings(self) -> list[dict[str, Any]]:
        return _parse_lines(self.path / "timings.jsonl", limit=self._limit())

    def _limit(self) -> int | None:
        try:
            return self.last_generation + 1 if self.exists else None
        except DataError:
            return None

    def load_samples(self, generation: int) -> np.ndarray:
        return np.load(self._gen("samples", generation, ".npy"), allow_pickle=False)

    def load_model(self, generation: int) -> Any:
        return load_model(self._gen("checkpoints", generation))


def loss_table(losses: Any, max_points: int = 2000) -> str:
    """A CSV ``step,loss`` of a training-loss curve, averaged into at most ``max_points`` bins."""
    values = np.asarray(losses, dtype=np.float64)
    steps = np.arange(1, values.size + 1)
    if values.size > max_points:
        edges = np.linspace(0, values.size, max_points + 1).astype(int)
        steps = np.array([edges[i + 1] for i in range(max_points)])
        values = np.array([values[edges[i]:edges[i + 1]].mean() for i in range(max_points)])
    return "step,loss\n" + "".join(f"{s},{v!r}\n" for s, v in zip(steps, values))


def read_losses(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (steps, losses) of a table written by :func:`loss_table`."""
    rows = [ln.split(",") for ln in path.read_text(encoding="utf-8").splitlines()[1:] if ln]
    return np.array([int(r[0]) for r in rows]), np.array([float(r[1]) for r in rows])


def _chain(previous: str, entry: dict[str, Any]) -> str:
    """The manifest's chained checksum: SHA-256 of the previous value and this entry."""
    return sha256_text(previous + json.dumps(entry, sort_keys=True))


def _mb(n: int) -> str:
    from genloop._text import human_size

    return human_size(n)


def _read_lines(path: Path) -> list[str]:
    """The complete lines of a text file (a final line without newline is a torn write: dropped)."""
    if not path.exists():
        return []
    data = path.read_bytes().decode("utf-8", errors="replace")
    return data.split("\n")[:-1]  # the last element is "" or a torn tail


def _rewrite_lines(path: Path, lines: list[str]) -> None:
    atomic_write_text(path, "".join(ln + "\n" for ln in lines))


def _has_torn_tail(path: Path) -> bool:
    """Whether the file ends in a partial line (a write cut short by a kill)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


def _parse_lines(path: Path, *, limit: int | None) -> list[dict[str, Any]]:
    lines = _read_lines(path)[:limit]
    rows = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            rows.append(json.loads(ln))
        except ValueError:
            raise DataError(f"{path} line {i + 1} is damaged (not JSON); run `genloop check` on the folder") from None
    return rows
