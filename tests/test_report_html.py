"""report.html loads in headless Chromium with no console messages, and its three embedded
plots decode to real images. Skipped (with the reason) when Chromium is absent; install it
with ``apt-get install -y chromium`` (Debian/Ubuntu)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from compress_runs import reference_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((b for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed "
                                "(apt-get install -y chromium); the HTML report is not checked")

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
    proc = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-extensions", f"--user-data-dir={profile_dir}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
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
