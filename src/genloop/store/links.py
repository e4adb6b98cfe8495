"""Folder safety: genloop never writes, deletes or truncates through a link it did not create.

A run folder holds only what genloop writes (:data:`RUN_FILES`, :data:`RUN_FOLDERS`, and the
``gen_NNNN`` entries and temporary files inside those folders). A symbolic link in a place
where genloop would write (the run folder itself, its ``lam=…`` folder, a grid cell, one of its
sub-folders or files) could point anywhere on the machine (a ``training -> ~`` link, a
``checkpoints`` folder moved to a scratch disk), so a run refuses such a folder with a
message naming the link, and ``genloop check`` reports it. Anything else in the folder is a
*foreign* entry: reported by ``genloop check``, never deleted.

Every delete goes through :func:`remove_inside`, which checks with ``os.lstat`` (never
following a link) that the path lies inside the folder it belongs to and that no folder
between them is a link, and removes a link itself, never its target.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from genloop.errors import DataError

__all__ = [
    "RUN_FILES", "RUN_FOLDERS", "FolderScan", "is_link", "link_text", "refuse_links_on_path", "remove_inside",
    "scan_run_folder",
]

#: Files genloop writes at the top of a run folder.
RUN_FILES = ("config.yaml", "status.json", "manifest.jsonl", "metrics.jsonl", "timings.jsonl", "tracking.json", ".lock")
#: Folders genloop writes in a run folder; their entries are ``gen_NNNN`` files or folders.
RUN_FOLDERS = ("checkpoints", "samples", "synthetic", "grids", "losses", "training")

_GEN = re.compile(r"^gen_(\d{4,})(\.[A-Za-z0-9.]+)?$")
_TEMPORARY = re.compile(r"\.tmp(\.[A-Za-z0-9]+)?$")


def generation_of(name: str) -> int | None:
    """The generation an entry named ``gen_NNNN[.ext]`` belongs to (``None`` for other names)."""
    m = _GEN.match(name)
    return int(m.group(1)) if m else None


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file or folder of genloop's atomic writers
    (``.NAME.XXXX.tmp``, ``.NAME.XXXX.tmp.npy``, ``.NAME.XXXX.tmp.png``, ``.gen_NNNN.PID.tmp``)."""
    return name.startswith(".") and _TEMPORARY.search(name) is not None


def is_link(path: Path) -> bool:
    """Whether ``path`` itself is a symbolic link (``lstat``: the link is not followed)."""
    return os.path.islink(path)


def link_text(path: Path, base: Path) -> str:
    """``REL -> TARGET`` for messages (the target as stored in the link, never resolved)."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    rel = os.path.relpath(path, base) if path != base else str(path)
    return f"{rel} -> {target}"


def refuse_links_on_path(root: Path, path: Path, *, what: str = "folder") -> None:
    """Raise :class:`DataError` when ``path`` or a folder between ``root`` and it is a link.

    ``root`` itself is the user's choice (an ``--out`` on a scratch disk through a link is
    fine); everything genloop created below it must be a real folder.
    """
    root, path = Path(root), Path(path)
    rel = _relative_inside(root, path)
    node = root
    for part in rel.parts:
        node = node / part
        if is_link(node):
            raise DataError(
                f"{node} is a symbolic link (to {os.readlink(node)}), where genloop keeps a {what}; genloop never "
                "writes or deletes through a link it did not create: put the folder itself in its place "
                "(or choose another --out)"
            )


def remove_inside(root: Path, path: Path) -> None:
    """Delete ``path`` (a file, a link, or a folder with its contents), which must lie inside
    ``root`` with no link between them; a link is removed itself, never what it points to.

    ``shutil.rmtree`` below a real folder does not follow links inside the tree (it removes
    them; :attr:`shutil.rmtree.avoids_symlink_attacks` on POSIX), so only ``path`` and its
    parents need checking here.
    """
    root, path = Path(root), Path(path)
    rel = _relative_inside(root, path)
    node = root
    for part in rel.parts[:-1]:
        node = node / part
        if is_link(node):
            raise DataError(f"{node} is a symbolic link (to {os.readlink(node)}); genloop does not delete through it")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    import stat

    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:  # a file or a link (the link itself)
        os.unlink(path)


def _relative_inside(root: Path, path: Path) -> Path:
    """``path`` relative to ``root``, refusing paths that leave it (``..``) lexically."""
    try:
        rel = Path(os.path.normpath(path)).relative_to(os.path.normpath(root)) if path != root else Path()
    except ValueError:
        rel = Path("..")
    if any(part == ".." for part in rel.parts):
        raise DataError(f"{path} is not inside {root}")
    return rel


class FolderScan:
    """What :func:`scan_run_folder` found: links where genloop writes, and foreign entries."""

    def __init__(self) -> None:
        self.links: list[str] = []
        self.foreign: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.links or self.foreign)


def scan_run_folder(path: Path) -> FolderScan:
    """Every link and every foreign entry of the run folder ``path`` (nothing is followed).

    A link is any entry (the folder itself, a top-level file or folder, an entry of a
    sub-folder) that is a symbolic link; a foreign entry is a name genloop does not write.
    """
    path = Path(path)
    scan = FolderScan()
    if is_link(path):
        scan.links.append(link_text(path, path.parent))
        return scan
    if not path.is_dir():
        return scan
    with os.scandir(path) as entries:
        top = sorted(entries, key=lambda e: e.name)
    for entry in top:
        if entry.is_symlink():
            scan.links.append(link_text(Path(entry.path), path))
        elif entry.name in RUN_FOLDERS and entry.is_dir(follow_symlinks=False):
            _scan_sub(path, Path(entry.path), scan)
        elif entry.name in RUN_FILES and (entry.is_file(follow_symlinks=False) or entry.name == ".lock"):
            continue
        elif is_temporary(entry.name):
            continue
        else:
            scan.foreign.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    return scan


def _scan_sub(run: Path, folder: Path, scan: FolderScan) -> None:
    with os.scandir(folder) as entries:
        found = sorted(entries, key=lambda e: e.name)
    for entry in found:
        rel = f"{folder.name}/{entry.name}"
        if entry.is_symlink():
            scan.links.append(link_text(Path(entry.path), run))
        elif generation_of(entry.name) is None and not is_temporary(entry.name):
            scan.foreign.append(rel + ("/" if entry.is_dir(follow_symlinks=False) else ""))
