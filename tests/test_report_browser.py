"""The HTML report in a real browser: headless Chromium, no console errors, images decode."""

from __future__ import annotations

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
