"""report.html loads in headless Chromium with no console messages, its three embedded plots
decode to real images, and a screenshot of the page has real content (not a blank page).
Skipped (with the reason) when Chromium is absent; install it with ``apt-get install -y
chromium`` (Debian/Ubuntu). Under ``.ci/run`` (EDGEKD_REQUIRE_BROWSER=1) a missing browser
fails instead: CI must check the page for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from compress_runs import reference_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((b for b in BROWSERS if shutil.which(b)), None)
REQUIRED = os.environ.get("EDGEKD_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(BROWSER is None and not REQUIRED, reason="Chromium is not "
                                "installed (apt-get install -y chromium); the HTML report is not checked")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-extensions", "--hide-scrollbars"]

#: Appended to a COPY of the report: records how many images decoded once the page loaded.
CHECK_IMAGES = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
});
</script>"""


def _chromium(page, profile_dir) -> tuple[str, list[str]]:
    """Load ``page``; return the DOM after load and the console lines Chromium logged."""
    assert BROWSER is not None, "EDGEKD_REQUIRE_BROWSER=1 but no Chromium: apt-get install -y chromium"
    proc = subprocess.run(
        [BROWSER, *FLAGS, f"--user-data-dir={profile_dir}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def test_report_html_loads_without_console_errors(tmp_path_factory, tmp_path) -> None:
    report = reference_run(tmp_path_factory) / "report" / "report.html"
    page = tmp_path / "report.html"
    shutil.copyfile(report, page)  # alone in its folder: nothing may be fetched next to it
    dom, console = _chromium(page, tmp_path / "profile-a")
    assert console == [], console
    assert "<h1>edgekd report" in dom and dom.count("<img") == 3

    checked = tmp_path / "checked.html"
    checked.write_text(report.read_text().replace("</body>", CHECK_IMAGES + "</body>"))
    dom, console = _chromium(checked, tmp_path / "profile-b")
    assert console == [], console
    match = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert match, "the image check did not run"
    assert match.group(1) == match.group(2) == "3"


def test_report_screenshot_is_not_blank(tmp_path_factory, tmp_path) -> None:
    """What a reader sees: a screenshot of the page holds text, tables and plots (many colours,
    a good share of non-white pixels, content down the page), not an empty or broken page."""
    import numpy as np
    from PIL import Image

    assert BROWSER is not None, "EDGEKD_REQUIRE_BROWSER=1 but no Chromium: apt-get install -y chromium"
    page = tmp_path / "report.html"
    shutil.copyfile(reference_run(tmp_path_factory) / "report" / "report.html", page)
    shot = tmp_path / "shot.png"
    proc = subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--window-size=1280,2400", "--virtual-time-budget=5000",
                           f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (2400, 1280)
    ink = (np.abs(pixels - 255).sum(axis=2) > 60)  # clearly not white
    assert ink.mean() > 0.02, f"only {ink.mean():.2%} of the page is drawn"
    rows = np.flatnonzero(ink.any(axis=1))
    assert rows.max() - rows.min() > 1200, "content covers only the top of the page"
    colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
    assert colours > 50, f"{colours} colours: no plot was drawn"
