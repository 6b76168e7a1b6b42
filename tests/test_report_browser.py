"""report.html as a person sees it: headless Chromium loads every image, logs no error, and the
screenshot is not blank. Chromium is Debian's package, installed by .ci/run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.report import build_report

GOLDEN = Path(__file__).parent / "data" / "golden"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]  # fmt: skip

# Added to a copy of the page only: counts images that decoded and errors that fired.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.src))), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-probe', ok + '/' + imgs.length + ' errors=' + window.__errors.length);
});
</script>"""

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_report_opens_in_chromium_with_images_loaded_and_no_errors(tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = build_report(GOLDEN, out)
    page = out / "report.html"
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))

    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probed.as_uri(), profile=tmp_path / "p1")
    match = re.search(r'data-probe="(\d+)/(\d+) errors=(\d+)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    loaded, total, errors = map(int, match.groups())
    assert total == len(report.figures) and loaded == total and errors == 0
    assert "CONSOLE" not in dom.stderr or not re.search(r"CONSOLE.*(Error|error)", dom.stderr)
    # as rendered: the page opens with what was measured, then the ranked summary and its takeaway
    assert re.findall(r"<h2>(.*?)</h2>", dom.stdout)[:2] == ["What was measured", "Summary"]
    assert "<p>Takeaway: best mean V_rand: unet-gelu" in dom.stdout and "<th>rank</th>" in dom.stdout

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri(), profile=tmp_path / "p2")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.01, "no text or figure drawn"
