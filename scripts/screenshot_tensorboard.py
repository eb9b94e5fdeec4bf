"""Screenshot of TensorBoard's Images tab with a checkpoint's attention cards, for the README.

    python scripts/screenshot_tensorboard.py --checkpoint RUN --src VAL_SOURCES \
        [--output docs/tensorboard.png]

Draws the cards a training run logs at an evaluation (the same val lines, the same figures, the
same Board call) for the checkpoint's model into a temporary log dir, starts TensorBoard on it,
opens the Images tab in headless Chromium (Debian's `chromium` and `chromium-driver`) and saves a
PNG of the page.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from server_process import ServerError, headless_chromium, tensorboard_process, viewport
from tensorboard_page import CARDS_PER_PAGE, open_images_tab

from seq2seq.cli.common import checked
from seq2seq.config import Range
from seq2seq.errors import DataError, Seq2SeqError
from seq2seq.files import check_output_file

SENTENCES = Range(1, CARDS_PER_PAGE)  # the cards of more would not be on the first page


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a run dir (its final model) or a checkpoint file")
    parser.add_argument("--src", required=True, type=Path, metavar="FILE",
                        help="the val source sentences, one per line (plain or .gz, .xz, .bz2)")
    parser.add_argument("--sentences", default=4,
                        type=lambda text: checked(text, int, SENTENCES.refusal),
                        help="how many cards, as train.num_plot_sentences (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("docs/tensorboard.png"),
                        help="PNG to write (default: %(default)s)")
    parser.add_argument("--size", type=viewport, default="1400x1200", metavar="WxH",
                        help="viewport in CSS pixels (default: %(default)s)")
    return parser.parse_args(argv)


def log_cards(checkpoint: str, src: Path, count: int, run_dir: Path) -> set[str]:
    """Log the checkpoint's attention cards of `count` val lines as its run would; their tags."""
    from seq2seq.analysis.plots import CARD_SOURCE_TOKENS
    from seq2seq.checkpoint import load_checkpoint
    from seq2seq.files import read_lines
    from seq2seq.inference.decoding import search_settings
    from seq2seq.inference.translator import Translator
    from seq2seq.training.tensorboard import Board, attention_tags, plotted_lines

    translator = Translator.from_checkpoint(checkpoint, "cpu")
    state = load_checkpoint(translator.checkpoints[0]).get("state", {})
    step = state.get("step") or max(state.get("averaged_steps") or [0])
    sources = list(read_lines(src))
    lines = plotted_lines(translator.tokenizer.encode_src(sources), count)
    settings = search_settings(translator.config, translator.config.train.valid_beam_size,
                               attention=True)
    if not lines:
        raise DataError(f"none of the {len(sources):,} lines of {src} is a sentence of 1 to "
                        f"{CARD_SOURCE_TOKENS - 1} subwords, which a card shows readably")
    found = translator.search([sources[line] for line in lines], settings)
    board = Board(run_dir)
    board.translations(step, lines, found, [""] * len(lines))
    board.close()
    return {tag for line, one in zip(lines, found, strict=True)
            for tag in attention_tags(line, len(one.weights()))}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    width, height = args.size
    try:
        check_output_file(args.output, "--output")
        with tempfile.TemporaryDirectory() as logs:
            run_dir = Path(logs)
            tags = log_cards(args.checkpoint, args.src, args.sentences, run_dir)
            with tensorboard_process(run_dir / "tb", run_dir / "tensorboard.log") as server:
                driver = headless_chromium(width, height)
                try:
                    open_images_tab(driver, server.url, tags)
                    args.output.parent.mkdir(parents=True, exist_ok=True)
                    if not driver.save_screenshot(str(args.output)):
                        raise SystemExit(f"error: could not write {args.output}")
                finally:
                    driver.quit()
    except (ServerError, Seq2SeqError, TimeoutError) as error:
        raise SystemExit(f"error: {error}") from None
    print(args.output)


if __name__ == "__main__":
    main()
