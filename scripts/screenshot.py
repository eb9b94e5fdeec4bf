"""Screenshot of the translation server's page, for the README.

    python scripts/screenshot.py --checkpoint RUN [--sentence "..."] [--output docs/server.png]
    python scripts/screenshot.py --checkpoint RUN1 --checkpoint RUN2 --compare \
        --output docs/compare.png

Starts `python -m seq2seq.cli.serve` on a free loopback port, opens the page in headless
Chromium (Debian's `chromium` and `chromium-driver`; Selenium Manager never downloads anything),
translates the sentence, hovers one row of the attention heatmap so that the picture shows the
highlight, saves a PNG and stops the server. With several checkpoints and --compare, the page's
compare view: every model's attention on the first one's translation, side by side.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from server_process import (
    ServerError,
    ServerProcess,
    device_scale,
    headless_chromium,
    viewport,
)

from seq2seq.errors import Seq2SeqError
from seq2seq.files import check_output_file

DEFAULT_SENTENCE = "Ein Mann mit einem orangefarbenen Hut starrt auf etwas."
TRANSLATE_TIMEOUT_S = 120


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, action="append", metavar="PATH",
                        help="a run dir (its final model, checkpoints/best.pt or averaged.pt) or a "
                             "checkpoint file; repeat it to serve several models")
    parser.add_argument("--compare", action="store_true",
                        help="the compare view of the models served (two --checkpoint or more)")
    parser.add_argument("--sentence", default=DEFAULT_SENTENCE,
                        help="what to translate; '\\n' separates lines (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("docs/server.png"),
                        help="PNG to write (default: %(default)s)")
    parser.add_argument("--hover", type=int, default=1, metavar="ROW",
                        help="heatmap row (target subword, from 0) to hover (default: %(default)s)")
    parser.add_argument("--size", type=viewport, default="1200x900", metavar="WxH",
                        help="viewport in CSS pixels (default: %(default)s)")
    parser.add_argument("--scale", type=device_scale, default=1.0,
                        help="device pixel ratio: 2 gives a sharper, twice as large PNG")
    args = parser.parse_args(argv)
    if args.compare and len(args.checkpoint) < 2:
        parser.error("--compare needs two --checkpoint or more")
    return args


def capture(driver: WebDriver, url: str, sentence: str, hover: int, output: Path,
            compare: bool = False) -> None:
    """Translate `sentence` on the page (in the compare view), hover heatmap row `hover`, save
    the PNG."""
    driver.get(f"{url}/")
    if compare:
        WebDriverWait(driver, TRANSLATE_TIMEOUT_S).until(
            lambda driver: driver.find_element(By.ID, "compare-field").is_displayed())
        driver.find_element(By.ID, "compare").click()
    source = driver.find_element(By.ID, "source")
    source.clear()
    source.send_keys(sentence)
    driver.find_element(By.ID, "translate").click()

    def drawn_or_failed(driver: WebDriver) -> bool:
        error = driver.find_element(By.ID, "error")
        return error.is_displayed() or bool(driver.find_elements(By.CSS_SELECTOR,
                                                                 "#heatmap g.row"))

    WebDriverWait(driver, TRANSLATE_TIMEOUT_S).until(drawn_or_failed)
    error = driver.find_element(By.ID, "error")
    if error.is_displayed():
        raise SystemExit(f"the page shows an error: {error.text}")
    rows = driver.find_elements(By.CSS_SELECTOR, "#heatmap g.row")
    ActionChains(driver).move_to_element(rows[min(max(hover, 0), len(rows) - 1)]).perform()
    output.parent.mkdir(parents=True, exist_ok=True)  # check_output_file said it can be
    if not driver.save_screenshot(str(output)):
        raise SystemExit(f"could not write {output}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    width, height = args.size
    try:
        check_output_file(args.output, "--output")
        with tempfile.TemporaryDirectory() as logs, \
                ServerProcess([arg for path in args.checkpoint for arg in ("--checkpoint", path)],
                              Path(logs) / "serve.log") as server:
            driver = headless_chromium(width, height, args.scale)
            try:
                capture(driver, server.url, args.sentence.replace("\\n", "\n"), args.hover,
                        args.output, args.compare)
            finally:
                driver.quit()
    except (ServerError, Seq2SeqError) as error:
        raise SystemExit(f"error: {error}") from None
    print(args.output)


if __name__ == "__main__":
    main()
