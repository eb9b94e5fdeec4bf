"""The server's page (GET /) in a real browser: Selenium drives Debian's headless Chromium through
Debian's chromedriver against `python -m seq2seq.cli.serve` serving the tiny trained model.

A missing chromium or chromedriver fails these tests instead of skipping them, as a missing
corpus does in CI: a skipped browser test would let a broken page through unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from server_process import ServerError, headless_chromium, request_json

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.config import MultiHeadAttentionConfig, to_plain

pytestmark = pytest.mark.slow

SENTENCE = "Ein Mann fährt Fahrrad."
PAGE_TIMEOUT_S = 60  # a translation on a machine busy with other work


@pytest.fixture(scope="module")
def server_url(serve, trained_checkpoint) -> str:
    """The base URL of a server for the tiny trained model."""
    return serve("--checkpoint", str(trained_checkpoint)).url


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium, 1200x900; a missing chromium or chromedriver fails the test."""
    try:
        driver = headless_chromium(1200, 900)
    except ServerError as error:
        pytest.fail(str(error))
    yield driver
    driver.quit()


def visible_error(driver: WebDriver) -> str:
    """The text of the page's error box, "" while it is hidden."""
    box = driver.find_element(By.ID, "error")
    return box.text if box.is_displayed() else ""


def shown_weights(driver: WebDriver) -> list[list[float]]:
    """The heatmap's cells as drawn, row by row (one script call: a WebDriver call per cell
    is one HTTP round trip each, seconds for a few hundred cells)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#heatmap g.row')].map(row => "
        "[...row.querySelectorAll('rect.cell')].map(cell => "
        "parseFloat(cell.getAttribute('data-weight'))));")


def translate_on_page(driver: WebDriver, url: str, text: str) -> None:
    """Load the page, type `text`, click Translate."""
    driver.get(f"{url}/")
    source = driver.find_element(By.ID, "source")
    source.clear()
    source.send_keys(text)
    driver.find_element(By.ID, "translate").click()


def test_page_shows_the_api_translation_and_one_heatmap_row_per_target_subword(browser,
                                                                              server_url):
    translate_on_page(browser, server_url, SENTENCE)
    # The heatmap is drawn after the translations, in the same task: rows mean both are there.
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda driver: visible_error(driver)
        or driver.find_elements(By.CSS_SELECTOR, "#heatmap g.row"))
    assert not visible_error(browser)

    beam, nbest = (int(browser.find_element(By.ID, name).get_attribute("value"))
                   for name in ("beam", "nbest"))
    expected = request_json(f"{server_url}/translate", {
        "text": [SENTENCE], "beam": beam, "nbest": nbest, "attention": True})["translations"][0]
    best = expected["hypotheses"][0]
    shown = browser.find_element(By.CSS_SELECTOR, "#translations button.hyp.best .hyp-text")
    assert shown.text.strip() and "empty" not in shown.get_attribute("class")
    assert shown.text == " ".join(best["text"].split())  # as HTML shows runs of spaces

    rows = browser.find_elements(By.CSS_SELECTOR, "#heatmap g.row")
    assert len(rows) == len(best["tgt_pieces"])  # with the final </s>
    assert [row.get_attribute("data-target") for row in rows] == best["tgt_pieces"]
    assert len(rows[0].find_elements(By.CSS_SELECTOR, "rect.cell")) == len(expected["src_pieces"])

    ActionChains(browser).move_to_element(rows[0]).perform()
    WebDriverWait(browser, 10).until(
        lambda driver: "active" in rows[0].get_attribute("class")
        and rows[0].find_elements(By.CSS_SELECTOR, "rect.cell.strong"))
    assert browser.find_elements(By.CSS_SELECTOR, "#heatmap text.col-label.strong")
    assert browser.find_element(By.ID, "heat-detail").text.strip()


def test_an_api_error_is_shown_beside_the_field_it_names(browser, server_url):
    browser.get(f"{server_url}/")
    limits = request_json(f"{server_url}/models")["limits"]
    beam = browser.find_element(By.ID, "beam")
    beam.clear()
    beam.send_keys(str(limits["max_beam"] + 1))
    browser.find_element(By.ID, "source").send_keys(SENTENCE)
    browser.find_element(By.ID, "translate").click()
    message = WebDriverWait(browser, PAGE_TIMEOUT_S).until(visible_error)
    assert "beam" in message
    assert "invalid" in beam.get_attribute("class")
    assert not browser.find_elements(By.CSS_SELECTOR, "#heatmap g.row")


def test_the_api_docs_draw_every_endpoint_from_the_servers_own_files(browser, server_url):
    # Swagger UI's script and style come from the server (this machine has no CDN to reach)
    browser.get(f"{server_url}/docs")
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    shown = {path.get_attribute("data-path")
             for path in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert shown == set(request_json(f"{server_url}/openapi.json")["paths"])


@pytest.fixture(scope="module")
def multihead_checkpoint(trained_checkpoint, untrained_translator, tmp_path_factory):
    """A 2-head model: the tiny run's tokenizer and config, untrained weights."""
    translator = untrained_translator(MultiHeadAttentionConfig(num_heads=2))
    payload = load_checkpoint(trained_checkpoint)
    payload["config"] = to_plain(translator.config)
    payload["model"] = translator.model.state_dict()
    path = tmp_path_factory.mktemp("multihead") / "heads.pt"
    save_checkpoint(payload, path)
    return path


@pytest.fixture(scope="module")
def multihead_url(serve, multihead_checkpoint) -> str:
    return serve("--checkpoint", str(multihead_checkpoint)).url


def test_a_multi_head_model_gets_a_tab_per_head_showing_that_heads_weights(browser,
                                                                           multihead_url):
    translate_on_page(browser, multihead_url, SENTENCE)
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "#heatmap g.row"))
    tabs = browser.find_elements(By.CSS_SELECTOR, "button.head-tab")
    assert [tab.text for tab in tabs] == ["mean", "head 1", "head 2"]
    beam, nbest = (int(browser.find_element(By.ID, name).get_attribute("value"))
                   for name in ("beam", "nbest"))
    heads = request_json(f"{multihead_url}/translate", {
        "text": [SENTENCE], "beam": beam, "nbest": nbest,
        "attention": True})["translations"][0]["hypotheses"][0]["attention"]
    expected_weights = [torch.tensor(heads).mean(0), *torch.tensor(heads)]
    for index, expected in enumerate(expected_weights):
        # the tabs are redrawn on every click: find them anew each time
        browser.find_elements(By.CSS_SELECTOR, "button.head-tab")[index].click()
        WebDriverWait(browser, 10).until(
            lambda driver, index=index: driver.find_elements(
                By.CSS_SELECTOR, "button.head-tab")[index].get_attribute("aria-selected") == "true")
        shown = torch.tensor(shown_weights(browser))
        torch.testing.assert_close(shown, expected, atol=1e-3, rtol=0)


def test_the_compare_view_draws_each_models_attention_on_the_same_translation(
        browser, serve, trained_checkpoint, multihead_checkpoint):
    url = serve("--checkpoint", str(trained_checkpoint),
                "--checkpoint", str(multihead_checkpoint)).url
    models = [model["id"] for model in request_json(f"{url}/models")["models"]]
    browser.get(f"{url}/")
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda driver: driver.find_element(By.ID, "compare-field").is_displayed())
    browser.find_element(By.ID, "compare").click()
    target = "A man rides a bike ."
    browser.find_element(By.ID, "target").send_keys(target)
    browser.find_element(By.ID, "source").send_keys(SENTENCE)
    browser.find_element(By.ID, "translate").click()
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda driver: visible_error(driver)
        or len(driver.find_elements(By.CSS_SELECTOR, ".compare-map svg")) == 2)
    assert not visible_error(browser)

    cards = browser.find_elements(By.CSS_SELECTOR, ".compare-map")
    assert [card.get_attribute("data-model") for card in cards] == models
    for card, model in zip(cards, models, strict=True):
        pair = request_json(f"{url}/attention", {"text": [SENTENCE], "target": [target],
                                                 "model": model})["pairs"][0]
        rows = card.find_elements(By.CSS_SELECTOR, "g.row")
        assert [row.get_attribute("data-target") for row in rows] == pair["tgt_pieces"]
        shown = torch.tensor(browser.execute_script(
            "return [...arguments[0].querySelectorAll('g.row')].map(row => "
            "[...row.querySelectorAll('rect.cell')].map(cell => "
            "parseFloat(cell.getAttribute('data-weight'))));", card))
        torch.testing.assert_close(shown, torch.tensor(pair["attention"]).mean(0),
                                   atol=1e-3, rtol=0)
        # the word links and the statistics under the map
        links = card.find_elements(By.CSS_SELECTOR, ".links .link")
        assert len(links) == len(pair["alignment"])
        stats = card.find_element(By.CSS_SELECTOR, ".stats").text
        assert f"entropy {pair['statistics']['entropy']:.2f} nats" in stats

    # hovering a row of one map marks the same target row in both
    first_rows = cards[0].find_elements(By.CSS_SELECTOR, "g.row")
    ActionChains(browser).move_to_element(first_rows[1]).perform()
    WebDriverWait(browser, 10).until(
        lambda driver: all("active" in card.find_elements(By.CSS_SELECTOR, "g.row")[1]
                           .get_attribute("class") for card in cards))
    assert all(len(card.find_elements(By.CSS_SELECTOR, "g.row.active")) == 1 for card in cards)
    assert all(card.find_element(By.CSS_SELECTOR, ".detail").text.strip() for card in cards)
