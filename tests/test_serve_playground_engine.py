"""The playground page in a real headless browser (Chromium through chromedriver and selenium), driven from the
keyboard alone: type a query, switch modes, open a hit's explanation, check its bars add up to its score."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BUNDLED_MODEL, unavailable
from helpers import RELATIVE_PRECISION, indexed_demo
from serve_process import Service, running_service

from splade_os.model.encoder import SpladeEncoder

pytestmark = pytest.mark.engine

KEY = "playground-key-0123456789abcdef"


def _browser() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        unavailable("selenium is not installed: pip install -e '.[dev]'")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        unavailable("no Chromium or chromedriver: apt-get install chromium chromium-driver (scripts/test.sh does)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=DriverService(executable_path=str(driver)))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, engine_client: Any) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("playground")
    key_file = tmp / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    with SpladeEncoder(BUNDLED_MODEL) as encoder:
        for index in indexed_demo(engine_client, encoder, "test-playground"):
            with running_service(tmp, "--index", index, "--api-key-file", str(key_file), key=KEY) as svc:
                yield svc


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = _browser()
    try:
        yield driver
    finally:
        driver.quit()


def _wait(browser: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 60).until(condition)


def test_the_playground_searches_every_mode_and_explains_a_hit(service: Service, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(service.url + "/")
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "query"  # the query box has the focus: no mouse needed
    # The key field, then back to the query, by keyboard: Tab moves through the form in order.
    active.send_keys(Keys.TAB, Keys.TAB, Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    browser.switch_to.active_element.send_keys(KEY)
    query = browser.find_element(By.ID, "query")
    text = "what causes a heart attack"
    query.send_keys(text, Keys.ENTER)
    _wait(browser, lambda b: b.find_element(By.ID, "status").get_attribute("data-query") == text)

    columns = {s.get_attribute("data-mode"): s for s in browser.find_elements(By.CSS_SELECTOR, "section.mode")}
    assert list(columns) == ["bm25", "splade", "hybrid", "two-phase"]
    for mode, section in columns.items():
        assert section.find_elements(By.CSS_SELECTOR, "details.hit"), f"{mode} shows no hits"
        assert "ms in the service" in section.find_element(By.CSS_SELECTOR, ".latency").text
    expansion = browser.find_element(By.ID, "expansion")
    assert expansion.find_elements(By.CSS_SELECTOR, ".term.expansion")  # the query's expansion, marked

    # Switch BM25 off from the keyboard: focus its checkbox and press space.
    bm25_box = browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=bm25]")
    bm25_box.send_keys(Keys.SPACE)
    _wait(browser, lambda b: not columns["bm25"].is_displayed())
    assert columns["splade"].is_displayed()

    # Open the first SPLADE hit's explanation from the keyboard and read its bars.
    first = columns["splade"].find_element(By.CSS_SELECTOR, "details.hit")
    summary = first.find_element(By.TAG_NAME, "summary")
    summary.send_keys(Keys.ENTER)
    _wait(browser, lambda b: first.get_attribute("open") is not None)
    rows = first.find_elements(By.CSS_SELECTOR, ".bar-row")
    assert rows and all(r.is_displayed() for r in rows)
    score = float(first.get_attribute("data-score"))
    contributions = [float(r.get_attribute("data-contribution")) for r in rows]
    # The bars are the hit's matching terms q x d: they add up to its score (Lucene keeps 9 bits of each weight).
    assert sum(contributions) == pytest.approx(score, rel=len(rows) * RELATIVE_PRECISION)
    widths = [
        float(r.find_element(By.CSS_SELECTOR, ".bar").get_attribute("style").split(":")[1].strip(" %;")) for r in rows
    ]
    assert sum(widths) == pytest.approx(100 * sum(contributions) / score, abs=0.01)
    expansion_rows = [r for r in rows if "expansion" in r.get_attribute("class")]
    expansion_terms = {t.text.split(":")[0] for t in expansion.find_elements(By.CSS_SELECTOR, ".term.expansion")}
    assert {r.get_attribute("data-token") for r in expansion_rows} <= expansion_terms
    browser.save_screenshot(str(tmp_path / "playground.png"))


def test_the_playground_shows_a_refusal_instead_of_hits(service: Service, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(service.url + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(service.url + "/")
    browser.find_element(By.ID, "query").send_keys("heart", Keys.ENTER)  # no API key typed
    _wait(browser, lambda b: b.find_element(By.ID, "status").get_attribute("data-query") == "heart")
    errors = browser.find_elements(By.CSS_SELECTOR, "section.mode .error")
    assert len(errors) == 4 and all("API key" in e.text for e in errors)
