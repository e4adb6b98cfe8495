"""The self-contained HTML report (genloop.report.html.build_report)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genloop.config import parse_config
from genloop.errors import ConfigError
from genloop.report.html import build_report, html_table
from genloop.sweep import run_experiment

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _experiment(out: Path, monkeypatch: pytest.MonkeyPatch, model: dict, **loop) -> Path:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not what is tested here
    doc = {
        "name": "tiny-report",
        "data": {"name": "two_moons", "n": 120, "noise": 0.05},
        "model": model,
        "loop": {"generations": 2, "lambdas": [0.5, "inf"], "seeds": [0], **loop},
        "metrics": ["w2", "mmd"],
        "output": {"keep_samples": 200},
    }
    run_experiment(parse_config(doc), out)
    return out


def _images(text: str) -> list[tuple[str, Image.Image]]:
    out = []
    for alt, data in IMG.findall(text):
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        img = Image.open(io.BytesIO(raw))
        img.load()  # decodes every chunk: a truncated or corrupt PNG raises
        assert img.format == "PNG" and img.width > 50 and img.height > 50
        out.append((alt, img))
    return out


def _last_metrics(run: Path) -> dict:
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return lines[-1]


@pytest.mark.slow
def test_report_of_a_gaussian_experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _experiment(tmp_path / "exp", monkeypatch, {"name": "gaussian"})
    path = build_report(folder, n_boot=20)
    assert path == folder / "report.html"
    text = path.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    # the resolved config as YAML
    assert html.escape((folder / "config.yaml").read_text()) in text
    # the summary table holds each run's last metrics: full value in title, 4 digits shown
    for lam in ("0.5", "inf"):
        last = _last_metrics(folder / f"lam={lam}" / "seed=0")
        for key in ("w2", "mmd"):
            v = float(last[key])
            cell = f'<td title="{v!r}">'
            assert cell in text, (lam, key)
            shown = f"{v:.3e}" if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3) else f"{v:.4g}"
            assert f"{cell}{shown}</td>" in text
    # one plot per metric in metrics.jsonl (standard errors as error bars of their metric, bandwidths
    # not at all), the scatter grid, the trajectory overlays (μ and Σ)
    keys = [k for k in _last_metrics(folder / "lam=0.5" / "seed=0") if k not in ("generation", "n_real", "n_synthetic")]
    metrics = [k for k in keys if not k.endswith(("_se", "_bandwidth"))]
    assert "mmd_se" in keys and "mmd_bandwidth" in keys and metrics == ["w2", "mmd"]
    alts = [alt for alt, _ in _images(text)]
    aggregated = metrics  # over seeds: mean ± 95% t-interval
    assert len(alts) == len(metrics) + len(aggregated) + 3
    assert "w2 per generation: one line per λ" in alts  # one seed: no mean, no band
    assert "mmd per generation: one line per λ; error bars: 95% interval of the plotted value from mmd_se" in alts
    for m in aggregated:
        assert f"{m}: mean over seeds per generation, band = 95% t-interval" in alts
    assert any(a.startswith("rows: λ") and a.endswith("; grey: real training data") for a in alts)  # drawn: said
    assert "RMS distance to θ* (mu); dashed: predicted" in alts
    assert "RMS distance to θ* (sigma); dashed: predicted" in alts
    # theory: the Gaussian is an exponential family, exact rate λ/(1+λ) = 1/3 at λ = 0.5
    assert "Predicted stability per λ" in text
    row = re.search(r"<tr><td title=\"0.5\">0.5</td><td>60</td><td title=\"([^\"]+)\">", text)
    assert row is not None and float(row.group(1)) == pytest.approx(1 / 3, abs=1e-9)
    # the overlay table: generation 0 of the MLE is θ* itself (observed and predicted 0)
    assert '<td class="text">0.5</td><td>0</td><td>1</td><td title="0.0">0</td>' in text
    assert "not available" not in text


def test_single_run_folder_and_out_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _experiment(tmp_path / "exp", monkeypatch, {"name": "gaussian"})
    run = folder / "lam=0.5" / "seed=0"
    out = build_report(run, tmp_path / "deep" / "r.html", theory=False)
    assert out == tmp_path / "deep" / "r.html"
    text = out.read_text()
    assert html.escape((run / "config.yaml").read_text()) in text
    assert "theory section not requested" in text
    metrics = [k for k in _last_metrics(run) if k not in ("generation", "n_real", "n_synthetic", "mmd_se", "mmd_bandwidth")]
    assert len(_images(text)) == len(metrics) + 1  # the metric plots (w2, mmd) and the scatter grid
    (tmp_path / "dir").mkdir()
    assert build_report(run, tmp_path / "dir", theory=False) == tmp_path / "dir" / "report.html"


def test_sections_degrade_to_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    doc = {
        "data": {"name": "two_moons", "n": 60},
        "model": {"name": "kde", "bandwidth": 0.2},
        "loop": {"generations": 1, "lambdas": [1], "seeds": [0]},
        "metrics": [],
        "output": {"keep_samples": 0},
    }
    run_experiment(parse_config(doc), tmp_path / "kde")
    text = build_report(tmp_path / "kde").read_text()
    assert "no metrics were recorded" in text
    assert "no evaluation samples were kept" in text
    assert "does not cover model &#x27;kde&#x27;" in text
    assert "<img" not in text
    assert "<td class=\"text\">1</td><td class=\"text\">0</td><td class=\"text\">completed</td>" in text


def test_image_samples_become_grids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _experiment(tmp_path / "exp", monkeypatch, {"name": "gaussian"})
    rng = np.random.default_rng(0)
    for samples in folder.glob("lam=*/seed=*/samples/gen_*.npy"):  # stored samples as 8×8 gray images
        np.save(samples, rng.uniform(-1, 1, size=(20, 1, 8, 8)), allow_pickle=False)
    text = build_report(folder, theory=False).read_text()
    grids = [(alt, img) for alt, img in _images(text) if alt.startswith("λ = ")]
    assert len(grids) == 2 * 3  # two λ, generations 0, 1, 2
    # 8 tiles of 8 px scaled ×4 with 1 px padding (scaled): width (8·(8+1)+1)·4
    assert {img.width for _, img in grids} == {(8 * 9 + 1) * 4}
    # a grid PNG the store wrote for a generation is embedded as it is, byte for byte
    from genloop.report.grids import save_sample_grid

    run = folder / "lam=inf" / "seed=0"
    stored = save_sample_grid(rng.uniform(-1, 1, size=(5, 3, 6, 6)), run / "grids" / "gen_0001.png", 4, scale=9)
    text = build_report(folder, theory=False).read_text()
    assert base64.b64encode(stored.read_bytes()).decode() in text
    assert "λ = inf, generation 1: stored sample grid" in text


def test_missing_or_empty_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_report(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no genloop run"):
        build_report(tmp_path)


def test_html_table_escapes_and_formats() -> None:
    out = html_table([{"a": "<b>", "x": 0.000123456, "n": 3, "ok": True, "none": None}])
    assert "&lt;b&gt;" in out and "<b>" not in out.replace("<th>", "")
    assert '<td title="0.000123456">1.235e-04</td>' in out
    assert "<td>3</td>" in out and "<td>holds</td>" in out and "<td>-</td>" in out
