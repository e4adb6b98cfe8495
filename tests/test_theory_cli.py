"""``genloop theory`` and ``genloop report`` print the same numbers, from one computation."""

from __future__ import annotations

import math
import re

import numpy as np
import yaml

from genloop.cli import main
from genloop.config import parse_config
from genloop.theory import config_theory as theory_cli

DOC = {
    "data": {"name": "gaussian", "n": 30, "mean": [0.0]},
    "model": {"name": "gaussian", "estimator": "unbiased"},
    "loop": {"generations": 3, "lambdas": [0.45, "inf"], "seeds": [4]},
    "metrics": ["moments"],
}


def test_theory_is_deterministic_and_cached() -> None:
    cfg = parse_config(DOC)
    theory_cli._CACHE.clear()
    first = theory_cli.config_theory(cfg)
    assert theory_cli.config_theory(cfg) is first  # cached per config
    theory_cli._CACHE.clear()
    second = theory_cli.config_theory(cfg)
    for a, b in zip(first.rows, second.rows):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == b[key] or (isinstance(a[key], float) and math.isnan(a[key]) and math.isnan(b[key])), key
    assert first.rows[0]["m"] == 13 and abs(first.rows[0]["rate"] - 13 / 43) < 1e-15  # ⌊0.45·30⌋ = 13


def test_report_shows_the_numbers_of_genloop_theory(tmp_path, capsys) -> None:
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(DOC))
    theory_cli._CACHE.clear()
    assert main(["theory", str(cfg_path)]) == 0
    text = capsys.readouterr().out
    rows = theory_cli.config_theory(parse_config(DOC)).rows
    theory_cli._CACHE.clear()  # the report recomputes from scratch: same stream, same numbers
    out = tmp_path / "exp"
    assert main(["run", str(cfg_path), "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    html_text = (out / "report.html").read_text()
    for row in rows:
        for key in ("sd_T", "theorem2_radius", "norm2"):
            value = row[key]
            if value is not None and np.isfinite(value):
                assert f'title="{value!r}"' in html_text, key
    shown = re.findall(r"\| gaussian \| +0\.45 \| +13 \| +([0-9.]+) \|", text)
    assert shown == [f"{13 / 43:.4g}"]


def test_a_loop_variant_gets_its_own_law() -> None:
    """The plain loop's numbers would describe another run: a variant gets its own law
    (tests/test_theory_variants_cli.py) or "no prediction" with the reason, never the plain rows;
    a λ schedule of the gaussian model gets the scheduled law (tests/test_theory_schemes.py)."""
    doc = {**DOC, "loop": {**DOC["loop"], "variant": {"kind": "biased", "temperature": 0.8}}}
    text = theory_cli.theory_text(parse_config(doc), legend=False)
    assert "biased sampling (temperature T = 0.8" in text and "Theorem 1" not in text
    doc = {**DOC, "loop": {**DOC["loop"], "variant": {"kind": "corrected", "gamma": 0.5}}}  # knn: no law
    assert "no prediction: correction 'knn'" in theory_cli.theory_text(parse_config(doc), legend=False)
    doc = {**DOC, "loop": {**DOC["loop"], "variant": {"kind": "plain", "lam_schedule": [0.5, 1.0]}}}
    assert "product of the per-generation maps" in theory_cli.theory_text(parse_config(doc), legend=False)
    assert "no prediction" not in theory_cli.theory_text(parse_config(DOC), legend=False)
