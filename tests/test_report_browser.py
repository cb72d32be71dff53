"""The HTML report in a real browser: headless Chromium, no console errors, images decode."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_report import build_warehouse

from ishwh.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")

# Console messages, failed loads and blocked requests as Chromium logs them on stderr.
_PROBLEM = re.compile(r"CONSOLE|Failed to load|net::ERR|Refused to|Uncaught", re.I)


def _chromium(page: Path, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=3000", *extra, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=90,
        )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    return build_report(build_warehouse(root / "wh.duckdb"), root / "out")


def test_console_errors_are_caught(tmp_path):
    """Control: the log scan below does see a console error when there is one."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><body><script>console.error("boom")</script>'
                    '<img src="missing.png"></body>')
    res = _chromium(page, "--dump-dom")
    assert _PROBLEM.search(res.stderr), res.stderr[-2000:]


def test_report_opens_without_console_errors(report, tmp_path):
    res = _chromium(report.html, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    problems = [line for line in res.stderr.splitlines() if _PROBLEM.search(line)]
    assert problems == []
    assert "Table 1" in res.stdout  # the DOM was rendered
    shot = tmp_path / "shot.png"
    res = _chromium(report.html, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.is_file() and shot.stat().st_size > 50_000


def test_every_embedded_image_decodes_in_the_browser(report, tmp_path):
    """A copy of the page with a probe script: each <img> loaded with a real size."""
    probe = (
        "<script>window.addEventListener('load', () => {"
        "const imgs = [...document.images];"
        "const ok = imgs.filter(i => i.complete && i.naturalWidth > 100).length;"
        "console.log('IMAGES_OK ' + ok + '/' + imgs.length);});</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(report.html.read_text(encoding="utf-8").replace("</body>", probe + "</body>"))
    res = _chromium(page, "--dump-dom")
    n = len(report.figures)
    assert f"IMAGES_OK {n}/{n}" in res.stderr, res.stderr[-2000:]


# Widths the report is checked at: a desktop window and a phone (CSS px).
WIDTHS = {"wide": 1400, "narrow": 390}
# Screenshots for docs/: ISHWH_SCREENSHOTS=docs writes them there (relative to the repo).
SHOTS = os.environ.get("ISHWH_SCREENSHOTS")


def _framed(page: Path, width: int, height: int) -> Path:
    """A page showing ``page`` in a ``width`` px frame: headless Chromium's window is at least
    500 px wide, so a phone's width is a frame of that width (what the page sees inside)."""
    host = page.with_name(f"frame_{width}_{page.name}")
    host.write_text(f'<!DOCTYPE html><body style="margin:0"><iframe src="{page.name}" '
                    f'style="width:{width}px;height:{height}px;border:0"></iframe></body>')
    return host


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(WIDTHS))
def test_every_figure_fits_the_window_wide_and_narrow(report, tmp_path, kind):
    """At 1400 px and at a phone's 390 px: the page does not scroll sideways (wide tables
    scroll in their own box), every figure is inside the window and decodes, and a screenshot
    of the top of the page is taken (into docs/ with ISHWH_SCREENSHOTS=docs)."""
    import cv2

    width, height = WIDTHS[kind], 1800
    probe = (
        "<script>window.addEventListener('load', () => {"
        "const w = window.innerWidth;"
        "const imgs = [...document.images];"
        "const fit = imgs.filter(i => i.complete && i.naturalWidth > 100"
        " && i.getBoundingClientRect().right <= w + 1 && i.getBoundingClientRect().left >= 0);"
        "console.log('LAYOUT ' + w + ' ' + document.documentElement.scrollWidth + ' '"
        " + fit.length + '/' + imgs.length);});</script>"
    )
    page = report.html.with_name(f"probe_{kind}.html")  # beside the report: same folder
    page.write_text(report.html.read_text(encoding="utf-8").replace("</body>", probe + "</body>"))
    window = max(width, 500)
    shown = page if width >= 500 else _framed(page, width, height)
    res = _chromium(shown, "--dump-dom", f"--window-size={window},{height}")
    found = re.search(r"LAYOUT (\d+) (\d+) (\d+)/(\d+)", res.stderr)
    assert found, res.stderr[-2000:]
    inner, scroll, fit, n = (int(x) for x in found.groups())
    assert inner == width and scroll <= inner, (kind, inner, scroll)
    assert n == len(report.figures) and fit == n, (kind, fit, n)
    shown = report.html if width >= 500 else _framed(report.html, width, height)
    shot = tmp_path / f"report_{kind}.png"
    res = _chromium(shown, f"--screenshot={shot}", f"--window-size={window},{height}")
    assert shot.is_file(), res.stderr[-2000:]
    img = cv2.imread(str(shot))[:, :width]
    assert img.shape[1] == width and img.std() > 10   # something drawn, not a blank page
    cv2.imwrite(str(shot), img)
    page.unlink()
    if SHOTS:
        dest = Path(__file__).resolve().parents[1] / SHOTS
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest / f"report_{kind}.png")
