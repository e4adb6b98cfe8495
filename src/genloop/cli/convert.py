"""``genloop convert``: public checkpoints to safetensors, without running code stored in them.

``genloop convert edm-pkl IN.pkl OUT.safetensors`` reads an EDM snapshot with a restricted
unpickler (:mod:`genloop.models.neural.checkpoints`) and writes the chosen network (``--key``,
default ``ema``) as safetensors plus ``OUT.json`` describing the architecture (class,
constructor options, image shape, the genloop ``network`` config that loads it). This module
imports torch only when the command runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from genloop.errors import DataError, DiskFullError


def cmd_convert_edm_pkl(args: argparse.Namespace) -> int:
    from genloop._fs import output_file_problem
    from genloop.models.neural.checkpoints import convert_edm_pickle

    src, dst = Path(args.input), Path(args.output)
    if not src.is_file():
        raise DataError(f"EDM snapshot not found: {src}")
    if dst.suffix != ".safetensors":
        raise DataError(f"the output must be a .safetensors file, got {dst}")
    problem = output_file_problem(dst, create_folders=False)
    if problem:
        raise DataError(f"cannot write {dst}: {problem}")
    if (dst.exists() or dst.with_suffix(".json").exists()) and not args.force:
        raise DataError(f"{dst if dst.exists() else dst.with_suffix('.json')} exists; pass --force to overwrite it")
    weights, sidecar = staged_convert(lambda out: convert_edm_pickle(src, out, key=args.key), dst)
    import json

    from genloop.cli._common import say

    meta = json.loads(sidecar.read_text())
    say(f"wrote {weights} and {sidecar}")
    say(f"  {meta['class_name']} for images {tuple(meta['event_shape'])}; network: {meta['network']}")
    return 0


def staged_convert(convert: Callable[[Path], tuple[Path, Path]], dst: Path) -> tuple[Path, Path]:
    """Run ``convert(path)`` into a fresh temporary folder next to ``dst`` and move the weights
    and the sidecar into place only once both are written: a failure (a full disk, a refused
    snapshot) leaves ``dst`` and its sidecar as they were, with nothing half-written."""
    import shutil
    import tempfile

    from genloop._fs import is_disk_full

    stage = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        weights, sidecar = convert(stage / dst.name)
        os.replace(sidecar, dst.with_suffix(".json"))
        os.replace(weights, dst)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"the disk holding {dst.parent} is full; nothing was written: free some space "
                                "and convert again") from None
        raise DataError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # our own fresh folder (mkdtemp), never a link
    return dst, dst.with_suffix(".json")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``genloop convert`` with its ``edm-pkl`` subcommand to the CLI's subparsers."""
    p = sub.add_parser("convert", help="convert a public pretrained checkpoint to safetensors (never runs stored code)")
    kinds = p.add_subparsers(dest="convert_kind", required=True)
    e = kinds.add_parser("edm-pkl", help="an EDM .pkl snapshot (restricted unpickler) to safetensors + JSON sidecar")
    e.add_argument("input", help="EDM snapshot, e.g. edm-cifar10-32x32-uncond-vp.pkl")
    e.add_argument("output", help="output .safetensors file (the sidecar is the same name with .json)")
    e.add_argument("--key", default="ema", help="which network of the snapshot (default: ema)")
    e.add_argument("--force", action="store_true", help="overwrite an existing output")
    e.set_defaults(func=cmd_convert_edm_pkl)


__all__ = ["add_parser"]
