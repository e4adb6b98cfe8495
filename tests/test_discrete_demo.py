"""`genloop demo --topic discrete`: the tails vanish fully synthetic, survive with real data."""

from __future__ import annotations

import re

import pytest

from genloop.cli import main


@pytest.mark.slow
def test_discrete_demo_writes_tables_and_plots(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--topic", "discrete", "--quick", "--out", str(out)]) == 0
    assert str(out / "results.md") in capsys.readouterr().out
    results = (out / "results.md").read_text()
    assert "Discrete tails" in results and "Regression on its own labels" in results
    assert "Gaussian collapse" not in results
    for name in ("discrete_support.png", "regression_collapse.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
    # table rows: lam | generation | mean support | ± s.e. | theory | median tail mass
    rows = [line.split("|")[1:-1] for line in results.splitlines() if re.match(r"\| (inf|1|0.25) \|", line)]
    by_lam = {r[0].strip(): [float(x) for x in r[1:]] for r in rows}  # the last generation of each λ
    gen, mean, se, theory, _ = by_lam["inf"]
    assert abs(mean - theory) <= 4 * se + 0.05  # the Wright–Fisher law, over the measurement
    assert by_lam["1"][1] > 2 * mean  # real data keep the support


def test_unknown_demo_topic_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--topic", "images", "--out", str(tmp_path / "d")])
    assert exc.value.code == 2
