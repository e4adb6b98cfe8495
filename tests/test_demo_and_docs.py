"""The README's promises: `genloop demo` writes its results, and the README's Python runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genloop.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_quick_writes_results_and_plots(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert str(out / "results.md") in printed
    # stderr is not a terminal here (as in CI logs and nohup files): plain progress lines, no bar
    progress = captured.err.splitlines()
    for k in range(1, 5):
        assert any(ln.startswith(f"genloop demo: step {k}/4: ") for ln in progress), k
        assert any(re.match(rf"genloop demo: step {k}/4 done in \d+ s \(\d+ s in all\)$", ln) for ln in progress), k
    generation_lines = [ln for ln in progress if re.match(r"genloop: lam=\S+ seed=0 generation \d+/4 done", ln)]
    assert len(generation_lines) == 2 * 4 * 5  # two models × 4 λ × generations 0..4, one line each
    assert "\r" not in captured.err  # no bar redrawn in a file
    results = (out / "results.md").read_text()
    assert "Gaussian collapse" in results and "Two moons" in results
    for name in ["gaussian_collapse.png"] + [f"two_moons-{m}-{k}.png" for m in ("gmm", "kde")
                                             for k in ("w2", "mmd", "nll", "scatter")]:
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 5000, name
    # the toy experiments are ordinary run folders: `genloop show` reads them
    assert main(["show", str(out / "two_moons-gmm")]) == 0
    assert "4 runs" in capsys.readouterr().out
    # the demo resumes instead of recomputing when run again into the same folder
    before = (out / "two_moons-gmm" / "lam=inf" / "seed=0" / "metrics.jsonl").read_text()
    assert main(["demo", "--quick", "--out", str(out), "--jobs", "1"]) == 0
    assert (out / "two_moons-gmm" / "lam=inf" / "seed=0" / "metrics.jsonl").read_text() == before


def test_readme_python_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has a Python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11 and lines[0].startswith("0 1000 0 ") and lines[-1].startswith("10 1000 500 ")


def test_example_configs_validate():
    from genloop.config import load_config

    configs = sorted((ROOT / "examples").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)
