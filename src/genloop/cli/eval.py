"""``genloop eval A B``: FID / KID / precision-recall-density-coverage / IS between two sets.

The inputs and conventions are those of :mod:`genloop.metrics.sets`; this module parses the
command line and prints. It imports torch only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from genloop import _json as strict_json
from genloop.cli._common import say
from genloop.errors import ConfigError


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``genloop eval``; prints a table (or JSON with ``--json``)."""
    from genloop.metrics.sets import evaluate, format_result, open_source

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.save_stats is not None:  # checked before any work: a folder that cannot take the file
        from genloop._fs import output_file_problem

        if not args.save_stats.endswith(".npz"):
            raise ConfigError(f"--save-stats: statistics files end in .npz (pytorch-fid's format), got {args.save_stats!r}")
        problem = output_file_problem(Path(args.save_stats), create_folders=True)
        if problem:
            raise ConfigError(f"--save-stats: cannot write {args.save_stats}: {problem}")
    a = open_source(args.a, channels_last=args.channels_last)
    b = open_source(args.b, channels_last=args.channels_last)
    result = evaluate(
        a, b, metrics=metrics, features=args.features, batch_size=args.batch_size, device=args.device,
        weights_path=args.weights, use_cache=not args.no_cache, resize=args.resize, k=args.k,
        rng=np.random.default_rng(args.seed), save_stats=args.save_stats,
    )  # fmt: skip
    if args.json:
        doc = {"generated": a.describe(), "real": b.describe(), **result}
        sys.stdout.write(strict_json.dumps(doc, indent=1) + "\n")  # NaN / inf: null, flagged under "nonfinite"
    else:
        say(f"A (generated): {a.describe()}\nB (real):      {b.describe()}")
        say(format_result(result))
        if args.save_stats:
            say(f"statistics of A written to {args.save_stats}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop eval`` on the CLI's subparsers."""
    from genloop.metrics import sets

    p = sub.add_parser(
        "eval",
        help="FID / KID / precision-recall-density-coverage / IS between two sets of samples",
        description=sets.__doc__.split("\n\n", 1)[1] if sets.__doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", help="generated set: image folder, .npy/.npz (images or features), run folder[:gen], stats .npz")
    p.add_argument("b", help="real (reference) set, same kinds as A")
    p.add_argument("--metrics", default="fid", help="comma-separated: fid, kid, prdc, is (default fid)")
    p.add_argument("--features", choices=["inception", "classifier", "raw"], default=None,
                   help="feature extractor (default: raw for feature vectors, inception for images)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch read from disk and fed to the network")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--weights", default=None, help="path of the FID Inception weights file")
    p.add_argument("--resize", choices=["pytorch-fid", "torch-fidelity", "clean-fid"], default="pytorch-fid",
                   help="the Inception input path of that tool, end to end: resize, clipping, scaling (default pytorch-fid)")
    p.add_argument("--k", type=int, default=3, help="neighbours for prdc (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of KID's random subsets")
    p.add_argument("--channels-last", action="store_true", help="arrays are (n, H, W, C); transpose them")
    p.add_argument("--save-stats", default=None, metavar="PATH.npz", help="write A's statistics (pytorch-fid format)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the statistics cache")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_eval)
