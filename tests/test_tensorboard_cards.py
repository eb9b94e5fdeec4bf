"""The attention cards as a user sees them: TensorBoard on a run's event files, its Images tab in
headless Chromium (1400 px wide), the size every label is shown at, and the labels read back
from a screenshot by Debian's tesseract-ocr.

A missing chromium, chromedriver or tesseract fails these tests instead of skipping them
(.ci/run installs all three).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import torch
from PIL import Image
from selenium.webdriver.remote.webdriver import WebDriver
from server_process import ServerError, headless_chromium, tensorboard_process
from tensorboard_page import ShownImage, open_images_tab

from seq2seq.analysis.plots import CARD_SCALE, CARD_WIDTH_PX, LABEL_POINTS
from seq2seq.inference.search import Hypothesis
from seq2seq.inference.translator import Translation
from seq2seq.training.tensorboard import Board, attention_tags

pytestmark = pytest.mark.slow

# words tesseract knows (its English model), with sentencepiece's word marks
SOURCE = "▁Zwei ▁Hunde ▁spielen ▁im ▁Garten ▁mit ▁einem ▁roten ▁Ball .".split()
TARGET = "▁Two ▁dogs ▁play ▁in ▁the ▁garden ▁with ▁a ▁red ▁ball .".split()
HEADS = 4
CARDS = {*attention_tags(0, 1), *attention_tags(1, HEADS)}
READ_BACK = 0.8  # of the words of 3 letters or more on an axis
OCR_UPSCALE = 3  # tesseract segments text best a few times larger than screen size


def translation(heads: int) -> Translation:
    """SOURCE translated as TARGET, attending mostly to the aligned word."""
    generator = torch.Generator().manual_seed(heads)
    weights = torch.softmax(torch.randn(heads, len(TARGET) + 1, len(SOURCE) + 1,
                                        generator=generator)
                            + 4 * torch.eye(len(TARGET) + 1, len(SOURCE) + 1), dim=-1)
    hypothesis = Hypothesis(tokens=list(range(4, 4 + len(TARGET))), score=-1.0, attention=weights)
    return Translation(source=" ".join(SOURCE), src_pieces=SOURCE, hypotheses=[hypothesis],
                       texts=[" ".join(TARGET)], tgt_pieces=[TARGET])


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory) -> Iterator[str]:
    """TensorBoard on a run whose Board logged a one-head and a four-head translation."""
    run = tmp_path_factory.mktemp("tensorboard_cards")
    board = Board(run)
    board.translations(100, [0, 1], [translation(1), translation(HEADS)], ["r0", "r1"])
    board.close()
    try:
        with tensorboard_process(run / "tb", run / "tensorboard.log") as server:
            yield server.url
    except ServerError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def shown(tensorboard_url) -> Iterator[tuple[list[ShownImage], bytes]]:
    """The attention cards of the Images tab, and a screenshot of the page (1 px per CSS px)."""
    try:
        driver: WebDriver = headless_chromium(1400, 2600)
    except ServerError as error:
        pytest.fail(str(error))
    try:
        images = open_images_tab(driver, tensorboard_url, CARDS)
        yield images, driver.get_screenshot_as_png()
    finally:
        driver.quit()


def read_back(screenshot: bytes, image: ShownImage, rotated: bool = False) -> str:
    """What tesseract reads in one card's picture (turned a quarter clockwise first for the
    source labels, which run bottom to top), lower-cased."""
    if shutil.which("tesseract") is None:
        pytest.fail("tesseract not found: install Debian's tesseract-ocr "
                    "(apt-get install tesseract-ocr; .ci/run does)")
    picture = Image.open(io.BytesIO(screenshot)).convert("L").crop(
        (round(image.x), round(image.y), round(image.x + image.width),
         round(image.y + image.height)))
    if rotated:
        picture = picture.rotate(-90, expand=True)
    picture = picture.resize((picture.width * OCR_UPSCALE, picture.height * OCR_UPSCALE),
                             Image.Resampling.LANCZOS)
    png = io.BytesIO()
    picture.save(png, format="PNG")
    done = subprocess.run(["tesseract", "stdin", "stdout", "--psm", "11"], input=png.getvalue(),
                          capture_output=True, check=True, timeout=120)
    return done.stdout.decode("utf-8", errors="replace").lower()


def found_words(pieces: list[str], text: str) -> float:
    """The share of the pieces' words (3 letters or more) found in the text read back."""
    words = [piece.strip("▁").lower() for piece in pieces if len(piece.strip("▁")) >= 3]
    read = set(re.findall(r"[a-zäöüß]+", text))
    return sum(word in read for word in words) / len(words)


def test_every_card_is_shown_at_its_drawn_size_with_labels_over_11_px(shown):
    images, _ = shown
    assert {image.tag for image in images} == CARDS
    for image in images:
        assert image.width == CARD_WIDTH_PX, image  # TensorBoard did not shrink it
        assert image.natural_width == CARD_WIDTH_PX * CARD_SCALE
        label_px = LABEL_POINTS / 72 * 100 * CARD_SCALE * image.width / image.natural_width
        assert label_px >= 11, (image.tag, label_px)


def test_the_labels_of_every_card_read_back_from_the_screenshot(shown):
    images, screenshot = shown
    for image in images:
        across, down = read_back(screenshot, image, rotated=True), read_back(screenshot, image)
        assert found_words(TARGET, down) >= READ_BACK, (image.tag, down)
        assert found_words(SOURCE, across) >= READ_BACK, (image.tag, across)
        assert "step 100" in down, (image.tag, down)


def test_the_stacked_card_names_every_head(shown):
    images, screenshot = shown
    (stacked,) = [image for image in images if image.tag.endswith("/all_heads")]
    text = read_back(screenshot, stacked)
    assert [f"head {h}" in text for h in range(1, HEADS + 1)] == [True] * HEADS, text



def test_the_readme_screenshot_script_draws_a_checkpoints_cards(trained_checkpoint, tmp_path):
    import screenshot_tensorboard

    src, png = tmp_path / "val.de", tmp_path / "cards.png"
    src.write_text("ein hund .\n\nzwei katzen .\n", encoding="utf-8")
    screenshot_tensorboard.main(["--checkpoint", str(trained_checkpoint), "--src", str(src),
                                 "--sentences", "2", "--output", str(png)])
    assert Image.open(png).size == (1400, 1200)


def test_the_screenshot_script_refuses_sources_without_a_sentence_to_plot(trained_checkpoint,
                                                                         tmp_path):
    import screenshot_tensorboard

    src = tmp_path / "blank.de"
    src.write_text("\n \n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"^error: none of the 2 lines of .*blank.de is a "
                                         r"sentence of 1 to \d+ subwords"):
        screenshot_tensorboard.main(["--checkpoint", str(trained_checkpoint), "--src", str(src),
                                     "--output", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()
