"""End to end: `fervideo dashboard` serves the seeded database on a free local port and headless
Chromium (Debian's chromium + chromium-driver, driven by selenium) renders the session page."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dashboard_seed import seed_database

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT_COPY = Path("/tmp/fervideo_dashboard_session.png")  # kept for a person to look at
PAGE_TIMEOUT_S = 40
# Chromium must not reach for the network (the test machine has none) and must not need a display.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,2600", "--hide-scrollbars")


def _missing_browser() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return "Chromium is not installed (apt-get install chromium chromium-driver, or `make browser`)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


pytestmark = pytest.mark.skipif(_missing_browser() is not None, reason=_missing_browser() or "")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the dashboard exited early:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the dashboard did not become healthy")


@pytest.fixture
def dashboard_server(db_url, tmp_path):
    seed_database(db_url)
    port = _free_port()
    env = os.environ | {"FERVIDEO_DB": db_url, "FERVIDEO_DASHBOARD_USERS": str(tmp_path / "none.json")}
    server = subprocess.Popen(
        [sys.executable, "-m", "fervideo.cli", "dashboard", "--port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def test_session_page_renders_in_headless_chromium(dashboard_server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(f"{dashboard_server}/session?session=1")
        wait = WebDriverWait(driver, PAGE_TIMEOUT_S)
        wait.until(expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Session 1"))
        # Vega-Lite draws into canvas/svg once its data arrives: wait for every timeline chart.
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] canvas, "
                                                               "[data-testid='stVegaLiteChart'] svg")) >= 5)
        wait.until(lambda d: "PHQ-8 estimate" in d.find_element(By.TAG_NAME, "body").text)
        time.sleep(1.0)  # let the last chart finish its transition before the picture
        body = driver.find_element(By.TAG_NAME, "body").text
        screenshot = tmp_path / "dashboard_session.png"
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    shutil.copy(screenshot, SCREENSHOT_COPY)
    assert screenshot.stat().st_size > 20_000  # a blank page is a few kB
    for expected in ("Emotion probabilities", "Face coverage", "14.2", "not a diagnosis", "Provenance"):
        assert expected in body, expected
    assert "Traceback" not in body and "Error" not in body.split("Provenance")[0]
