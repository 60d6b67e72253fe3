"""The HTML report rendered by headless Chromium: a screenshot, and no console errors.

Chromium is Debian's ``chromium`` package; when missing the test tries ``apt-get install``
and skips, saying so, only if that fails. Console messages reach stderr through
``--enable-logging=stderr``; a page that logs an error on purpose proves the check can fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine

from reports.html import render_html, report_page

CONSOLE = re.compile(r"CONSOLE|Uncaught|Failed to load resource|net::ERR_", re.I)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, check=True,
                       capture_output=True, timeout=600)
    found = shutil.which("chromium")
    if not found:
        pytest.skip("Chromium is not installed and `apt-get install -y chromium` failed")
    return found


def _render(page: Path, shot: Path, width: int = 1100, height: int = 4200,
            min_bytes: int = 20_000) -> list[str]:
    """Screenshot ``page``; return the stderr lines that report console output or errors."""
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={shot.parent / 'profile'}",
         f"--window-size={width},{height}", "--hide-scrollbars",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > min_bytes, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if CONSOLE.search(line)]


def test_the_check_sees_console_errors(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><title>x</title><p>bad</p>"
                    "<script>console.error('boom')</script>", encoding="utf-8")
    assert any("boom" in line for line in _render(page, tmp_path / "bad.png", 400, 300, 100))


def test_report_page_renders_without_console_errors(spring: Engine, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_page(spring, "spring"), encoding="utf-8")
    shot = tmp_path / "report.png"
    assert _render(page, shot) == []
    narrow = tmp_path / "report-narrow.png"  # the responsive layout at phone width
    assert _render(page, narrow, 420, 2400) == []
    print(f"screenshots: {shot} {narrow}")


def test_page_structure_is_accessible(spring: Engine) -> None:
    page = report_page(spring, "spring")
    assert '<html lang="en">' in page and '<meta name="viewport"' in page
    assert page.count("<h1>") == 1 and "<h2" in page and "<caption>" in page
    svgs = page.count("<svg")
    assert svgs >= 6 and page.count('role="img"') == svgs and page.count("<title id=") == svgs
    for chart in ("Funnel from sent to converted", "Engagement per hour since send",
                  "Click rate (human), 95% Wilson interval per variant with intervals",
                  "Revenue and cost"):
        assert chart in page
    assert "A/B decision:" in page and "Holdout and incremental lift" in page


def test_empty_report_page() -> None:
    assert "Nothing has been sent yet." in render_html([])
