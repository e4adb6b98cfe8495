"""``genloop convert``: public checkpoints to safetensors, without running code stored in them.

``genloop convert edm-pkl IN.pkl OUT.safetensors`` reads an EDM snapshot with a restricted
unpickler (:mod:`genloop.models.neural.checkpoints`) and writes the chosen network (``--key``,
default ``ema``) as safetensors plus ``OUT.json`` describing the architecture (class,
constructor options, image shape, the genloop ``network`` config that loads it). This module
imports torch only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genloop.errors import DataError


def cmd_convert_edm_pkl(args: argparse.Namespace) -> int:
    from genloop.models.neural.checkpoints import convert_edm_pickle

    src, dst = Path(args.input), Path(args.output)
    if not src.is_file():
        raise DataError(f"EDM snapshot not found: {src}")
    if dst.exists() and not args.force:
        raise DataError(f"{dst} exists; pass --force to overwrite it")
    weights, sidecar = convert_edm_pickle(src, dst, key=args.key)
    import json

    from genloop.cli._common import say

    meta = json.loads(sidecar.read_text())
    say(f"wrote {weights} and {sidecar}")
    say(f"  {meta['class_name']} for images {tuple(meta['event_shape'])}; network: {meta['network']}")
    return 0


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
