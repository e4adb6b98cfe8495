"""``genloop check-model package.module:Class``: the model contract (``genloop.testing.check_model``)."""

from __future__ import annotations

import argparse
from typing import Any

from genloop.cli._common import positive_int, say


def cmd_check_model(args: argparse.Namespace) -> int:
    import numpy as np

    from genloop.config import apply_override
    from genloop.data import make_data, split_real
    from genloop.errors import ConfigError
    from genloop.testing import CHECKS, SCHEMES, check_model

    options: dict[str, Any] = {}
    for item in args.set:
        apply_override(options, item)
    data_options: dict[str, Any] = {}
    for item in args.data_set:
        apply_override(data_options, item)
    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else list(CHECKS)
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ConfigError(f"--checks: unknown check(s) {', '.join(unknown)}; the checks are {', '.join(CHECKS)}")
    source = make_data(args.data, **data_options)
    X = split_real(source, args.n, 0, rng=np.random.default_rng(args.seed)).train
    report = check_model(args.model, X, options=options, checks=checks,
                         schemes=SCHEMES if args.schemes == "all" else ("replace",), raise_on_failure=False)
    for result in report.results:
        say(str(result))
    counts = {s: sum(r.status == s for r in report.results) for s in ("passed", "failed", "skipped")}
    tally = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    say(f"{report.model} {'passes' if report.ok else 'FAILS'} the model contract ({tally})")
    return 0 if report.ok else 1


def add_parser(sub: Any) -> None:
    """Register ``genloop check-model``."""
    p = sub.add_parser(
        "check-model",
        help="check a model class against the contract of the loop (fit, sampling seeds, exact resume, warm start)",
        description="Run genloop.testing.check_model on a model family: a registered name or an import path "
        "package.module:Class (the module is imported). Exit 0 when every check passes, 1 when one fails.",
    )
    p.add_argument("model", help="registered model name or import path 'package.module:Class'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a constructor option of the model (value parsed as YAML); repeatable")
    p.add_argument("--data", default="two_moons", help="registered data source (or import path) to fit (default two_moons)")
    p.add_argument("--data-set", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the data source; repeatable")
    p.add_argument("--n", type=positive_int, default=256, help="training samples (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data draw (default 0)")
    p.add_argument("--checks", default="", help="comma-separated subset of the checks (default: all)")
    p.add_argument("--schemes", choices=("all", "replace"), default="all",
                   help="retraining schemes of the loop_resume check (default: all four)")
    p.set_defaults(func=cmd_check_model)
