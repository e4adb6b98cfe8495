"""Crash-safe file writes shared by the run store and model checkpoints.

Every file genloop writes goes to a temporary file with a *unique* name in the destination's
folder (two writers never share a temporary file), is flushed to disk, given the mode an
ordinary ``open()`` would give it (the process umask: libraries such as safetensors create
0600 files), and moved into place with ``os.replace``, which is atomic on POSIX. A kill at
any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

_MODE: int | None = None


def file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a new file under the current umask."""
    global _MODE  # computed once: reading the umask means setting it, so do it once, early
    if _MODE is None:
        umask = os.umask(0o022)
        os.umask(umask)
        _MODE = 0o666 & ~umask
    return _MODE


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A new, unique, empty file next to ``path`` (``.NAME.XXXX.tmp``), for an atomic write."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def finish(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the ordinary file mode, flush it to disk and move it onto ``path``."""
    os.chmod(tmp, file_mode())
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_with(path: Path, write: Callable[[Path], object], suffix: str = ".tmp") -> None:
    """Atomically create ``path`` with ``write(tmp)``, a function that writes a file at ``tmp``
    (e.g. ``safetensors.save_file``, ``np.save``, an image writer): unique temporary name,
    ordinary file mode, fsync, ``os.replace``; the temporary file is removed on failure."""
    path = Path(path)
    tmp = temp_path(path, suffix=suffix)
    try:
        write(tmp)
        finish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (unique temporary file, fsync, ``os.replace``)."""
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    """Save ``arr`` as ``.npy`` (no pickle) to ``path`` atomically."""
    atomic_write_with(path, lambda tmp: np.save(tmp, np.ascontiguousarray(arr), allow_pickle=False), suffix=".tmp.npy")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    """The SHA-256 of a string's UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is the operating system saying the disk (or the quota) is full."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def output_file_problem(path: Path, *, create_folders: bool) -> str | None:
    """Why the file ``path`` cannot be written, checked before any work (``None``: it can).

    The file must not be a folder; its folder must exist (or, with ``create_folders``, the
    nearest existing folder above it), be a folder and be writable (``os.access``, which also
    sees a read-only file system).
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder"
    parent = path.parent if str(path.parent) else Path(".")
    if not create_folders and not parent.exists():
        return f"the output folder {parent} does not exist (create it first)"
    node = parent
    while not node.exists() and node != node.parent:
        node = node.parent
    if not node.is_dir():
        return f"{node} is a file, not a folder"
    if not os.access(node, os.W_OK | os.X_OK):
        return f"the output folder {node} is not writable"
    return None
