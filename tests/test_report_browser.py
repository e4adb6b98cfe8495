"""The report of a grid, opened as a reader would: in headless Chromium, offline.

The page must load without console errors, show every figure (each <img> decoded, with a
non-zero size) and fetch nothing from the network (no http(s) URL in the document).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from genloop.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

GRID = {
    "data": {"name": "two_moons", "n": 80, "noise": 0.05},
    "model": {"name": {"sweep": ["gmm", "kde"]}},
    "loop": {"generations": 3, "lambdas": [0, 1, "inf"], "seeds": [0, 1]},
    "metrics": [{"name": "w2", "max_exact": 80}],
}

#: Appended to a copy of the report: after load, the title says how many images decoded.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0));
  document.title = "probe images=" + imgs.length + " bad=" + bad.length;
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("grid")
    (folder / "grid.yaml").write_text(yaml.safe_dump(GRID))
    assert main(["-q", "run", str(folder / "grid.yaml"), "--out", str(folder / "g")]) == 0
    assert main(["-q", "report", str(folder / "g"), "--no-theory"]) == 0
    return folder / "g" / "report.html"


def test_report_fetches_nothing_and_embeds_every_figure(report):
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the report must not fetch anything"
    assert "http://" not in text and "https://" not in text
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "Stability verdict per λ" in text and "results.csv" in text


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs Debian's chromium "
                                             "when run as root; elsewhere: apt-get install chromium)")
def test_report_renders_in_headless_chromium_without_errors(report, tmp_path):
    page = tmp_path / "probe.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", proc.stdout)
    assert title is not None, proc.stdout[:500]
    match = re.fullmatch(r"probe images=(\d+) bad=(\d+)", title.group(1))
    assert match is not None, title.group(1)
    assert int(match.group(1)) >= 3 and int(match.group(2)) == 0, title.group(1)
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln]
    assert not [ln for ln in console if "error" in ln.lower() or "uncaught" in ln.lower()], console
