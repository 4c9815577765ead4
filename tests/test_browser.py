"""report.html and the gallery in a real headless Chromium (Debian's chromium + chromedriver,
driven by Selenium). Skipped, with the reason, where either is missing: `make test` installs them
when it runs as root on a machine with apt-get.

Screenshots are kept under pytest's temporary folder (printed with -s) and copied to
$SOZO_SCREENSHOTS when that is set.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from .test_report import make_image_run, make_text_run

CHROMIUM = os.environ.get("SOZO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SOZO_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]


def _require_browser() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'sozo[test]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} "
                    "(apt-get install chromium chromium-driver; `make test` does it as root)")
    if not Path(CHROMEDRIVER).is_file():
        pytest.skip(f"no chromedriver at {CHROMEDRIVER} (apt-get install chromium-driver)")


@pytest.fixture(scope="module")
def driver():
    _require_browser()
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sozo-chromium-")  # a new, empty profile every time
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:  # an explicit driver path: Selenium Manager never tries to download one
        d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as e:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"Chromium would not start here: {str(e).strip().splitlines()[0][:200]}")
    d.set_page_load_timeout(20)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def shot(d, screens: Path, name: str, full_page: bool = False) -> Path:
    """Save a screenshot (the whole page when asked) and copy it to $SOZO_SCREENSHOTS."""
    path = screens / f"{name}.png"
    if full_page:
        height = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(1280, min(max(900, height), 6000))
    d.save_screenshot(str(path))
    if full_page:
        d.set_window_size(1280, 900)
    copy = os.environ.get("SOZO_SCREENSHOTS")
    if copy:
        Path(copy).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(copy) / path.name)
    print(f"screenshot: {path}")
    return path


def errors(d) -> list[dict]:
    """SEVERE console entries since the last call (script errors, failed or refused loads)."""
    return [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]


def wait_for(predicate, timeout: float = 10.0, what: str = "the page") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser-runs")
    make_image_run(root / "gan", epochs=3)
    make_text_run(root / "enja")
    (root / "broken" / "model").mkdir(parents=True)
    (root / "broken" / "config.yaml").write_text("model:\n  name: dcgan\n")
    return root


@pytest.fixture(scope="module")
def gallery(runs_root):
    from sozo.gallery import start
    server, thread, url = start(runs_root, host="127.0.0.1", port=0, quiet=True)
    yield url
    server.shutdown()
    thread.join(5)


# ------------------------------------------------------------------------------------------------


def test_report_opens_without_errors_and_the_slider_moves(driver, runs_root, screens):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from sozo.viz.report import write_report

    report = write_report(runs_root / "gan")
    errors(driver)
    driver.get(report.as_uri())
    assert driver.title.startswith("gan")
    label = driver.find_element(By.ID, "epoch-label")
    assert label.text == "epoch 3"
    shown = [f for f in driver.find_elements(By.CSS_SELECTOR, ".frame") if f.is_displayed()]
    assert [f.get_attribute("data-epoch") for f in shown] == ["3"]
    img = shown[0].find_element(By.TAG_NAME, "img")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
    charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) >= 2 and all(c.size["height"] > 50 for c in charts)
    cursor = driver.find_element(By.CSS_SELECTOR, "svg[data-cursor] .cursor")
    x_last = float(cursor.get_attribute("x1"))
    shot(driver, screens, "report-epoch-3", full_page=True)
    assert errors(driver) == []

    slider = driver.find_element(By.ID, "slider")
    slider.send_keys(Keys.HOME)  # the keyboard moves a focused range input to its first value
    wait_for(lambda: label.text == "epoch 1", what="epoch 1 after Home")
    shown = [f for f in driver.find_elements(By.CSS_SELECTOR, ".frame") if f.is_displayed()]
    assert [f.get_attribute("data-epoch") for f in shown] == ["1"]
    assert slider.get_attribute("value") == "0"
    assert float(cursor.get_attribute("x1")) < x_last  # the curves' cursor followed
    shot(driver, screens, "report-epoch-1")
    driver.find_element(By.ID, "next").click()
    assert label.text == "epoch 2" and slider.get_attribute("value") == "1"
    driver.find_element(By.ID, "play").click()
    wait_for(lambda: label.text == "epoch 3", what="play to reach the last epoch")
    assert errors(driver) == []


def test_report_of_a_text_run(driver, runs_root, screens):
    from selenium.webdriver.common.by import By

    from sozo.viz.report import write_report

    report = write_report(runs_root / "enja")
    errors(driver)
    driver.get(report.as_uri())
    shown = [f for f in driver.find_elements(By.CSS_SELECTOR, ".frame") if f.is_displayed()]
    assert "He runs fast." in shown[0].text
    driver.find_element(By.ID, "prev").click()
    shown = [f for f in driver.find_elements(By.CSS_SELECTOR, ".frame") if f.is_displayed()]
    assert "<script>alert(1)</script>" in shown[0].text  # shown as text, never run
    assert "BLEU" in driver.find_element(By.ID, "eval-table").text
    shot(driver, screens, "report-text-run", full_page=True)
    assert errors(driver) == []


def test_gallery_lists_runs_and_samples_now(driver, gallery, screens):
    from selenium.webdriver.common.by import By

    errors(driver)
    driver.get(gallery)
    cards = {c.get_attribute("data-run"): c for c in driver.find_elements(By.CSS_SELECTOR, ".card.run")}
    assert set(cards) == {"gan", "enja", "broken"}
    assert "Skipped" in cards["broken"].text
    assert "FD-LeNet" in cards["gan"].text and "BLEU" in cards["enja"].text
    thumb = cards["gan"].find_element(By.CSS_SELECTOR, ".thumb img")
    before = thumb.get_attribute("src")
    assert driver.execute_script("return arguments[0].naturalWidth", thumb) > 0
    shot(driver, screens, "gallery", full_page=True)

    cards["gan"].find_element(By.CSS_SELECTOR, "button.sample-now").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, '.card[data-run="gan"] img.fresh'),
             timeout=30, what="the fresh samples")
    fresh = driver.find_element(By.CSS_SELECTOR, '.card[data-run="gan"] img.fresh')
    wait_for(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", fresh) > 0,
             what="the fresh image to load")
    assert fresh.get_attribute("src").startswith("blob:") and fresh.get_attribute("src") != before
    seed = fresh.get_attribute("data-seed")
    assert seed and seed.isdigit()
    assert f"seed {seed}" in cards["gan"].find_element(By.CSS_SELECTOR, ".seed").text
    shot(driver, screens, "gallery-sampled")
    cards["gan"].find_element(By.CSS_SELECTOR, "button.sample-now").click()  # again: another seed
    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, '.card[data-run="gan"] img.fresh')
             .get_attribute("data-seed") != seed, timeout=30, what="a second fresh grid")
    assert errors(driver) == []


def test_gallery_compare_and_report_pages(driver, gallery, screens):
    from selenium.webdriver.common.by import By

    errors(driver)
    driver.get(gallery)
    button = driver.find_element(By.ID, "compare-button")
    assert not button.is_enabled()
    for name in ("gan", "enja"):
        driver.find_element(By.CSS_SELECTOR, f'.card[data-run="{name}"] input.pick').click()
    assert button.is_enabled()
    button.click()
    wait_for(lambda: "/compare" in driver.current_url, what="the compare page")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Comparing 2 runs"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#compare-samples .col")) == 2
    shot(driver, screens, "compare", full_page=True)
    driver.find_element(By.LINK_TEXT, "gan").click()
    wait_for(lambda: "/run/gan" in driver.current_url, what="the report page")
    img = driver.find_element(By.CSS_SELECTOR, ".frame img")
    wait_for(lambda: driver.execute_script("return arguments[0].naturalWidth", img) > 0, what="the served samples")
    assert errors(driver) == []
