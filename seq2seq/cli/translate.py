"""`python scripts/translate.py --checkpoint RUN [SENTENCE ...]`: translate with a saved model.

Sentences come from the arguments, from `--input FILE`, or else from stdin, one per line; stdin
is streamed: each batch of the lines that have arrived is translated and flushed at once, so the
command works at the end of a pipe that sends one line at a time. Output: one line per input line
(`--nbest K`: K tab-separated lines `index, rank, score, translation` per input line); with
`--alignments hard|soft` each translation is followed by ` ||| ` and its word alignment, as
fairseq and fast_align users expect. Attention (`--show-attention`) goes to stderr, so stdout
holds only translations.

argparse rather than Hydra, and torch is imported only after the arguments are parsed: `--help`
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import io
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from seq2seq.cli.common import (
    add_model_arguments,
    load_translator,
    open_output,
    positive_int,
    refuse_same_files,
    run_cli,
)
from seq2seq.files import check_output_dir, check_output_file, decode_line

if TYPE_CHECKING:
    from seq2seq.inference.decoding import SearchSettings
    from seq2seq.inference.translator import Translation, Translator

ALIGNMENTS = ("hard", "soft")  # Pharaoh links, or the word-level attention matrix


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Translate sentences with a trained checkpoint (its tokenizer and config "
                    "are inside it). Input: the SENTENCE arguments, --input FILE, or stdin, one "
                    "sentence per line; output: one translation per line, in input order.",
        epilog="With --nbest K each input line gives K lines: 0-based input index, rank "
               "(1 = best), score (log-probability divided by the GNMT length penalty; higher is "
               "better) and translation, separated by TABs. --show-attention prints, per "
               "sentence to stderr, the source subword each target subword attends to most "
               "(heads averaged) and its weight. --alignments appends ' ||| ' and word "
               "alignments from attention to each translation: hard, Pharaoh links i-j (source "
               "word i, target word j, 0-based) from each target word to its most attended "
               "source word; soft, per target word its comma-separated weights over the source "
               "words (a word's pieces: summed over the source, averaged over the target; EOS "
               "left out).")
    parser.add_argument("sentences", nargs="*", metavar="SENTENCE",
                        help="sentences to translate (default: read --input or stdin)")
    add_model_arguments(parser)
    parser.add_argument("--nbest", type=positive_int, default=1, metavar="K",
                        help="print the K best translations as TSV: index, rank, score, "
                             "translation (K <= --beam)")
    parser.add_argument("--input", type=Path, metavar="FILE",
                        help="translate this file (UTF-8, plain or .gz), one sentence per line")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="write the translations here (replaced only once all are done)")
    parser.add_argument("--plot-attention", type=Path, metavar="DIR",
                        help="write an attention heatmap per sentence: DIR/<index>.png, or "
                             "DIR/<index>.head<k>.png per head of multi-head attention")
    parser.add_argument("--alignments", choices=ALIGNMENTS,
                        help="append ' ||| ' and each translation's word alignment (see below)")
    parser.add_argument("--show-attention", action="store_true",
                        help="print the most attended source subword of each target subword "
                             "to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sentences and args.input:
        parser.error("give sentences as arguments or --input FILE, not both")
    if args.nbest > args.beam:
        parser.error(f"--nbest {args.nbest} needs --beam {args.nbest} or more")
    refuse_same_files(parser, {"--input": args.input, "--output": args.output}, ["--output"])
    run_cli(lambda: translate(args))


def translate(args: argparse.Namespace) -> None:
    from seq2seq.errors import DataError
    from seq2seq.files import read_lines

    if not args.sentences and not args.input and sys.stdin is None:
        raise DataError("nothing to translate: stdin is closed; give sentences as arguments, "
                        "--input FILE, or lines on stdin")
    if args.output:
        check_output_file(args.output, "--output")
    if args.plot_attention:
        check_output_dir(args.plot_attention, "--plot-attention")
        from seq2seq.analysis.plots import save_attention_pngs  # matplotlib only when plotting
    translator = load_translator(args)
    settings = translator.settings(args.beam, args.length_penalty, args.max_len_ratio,
                                   args.nbest, attention=bool(args.show_attention
                                                              or args.plot_attention
                                                              or args.alignments))
    if args.sentences:
        found = enumerate(translator.iter_search(check_arguments(args.sentences), settings,
                                                 args.batch_size))
    elif args.input:
        found = enumerate(translator.iter_search(read_lines(args.input), settings,
                                                 args.batch_size))
    else:
        if sys.stdin.isatty():
            print("reading sentences from stdin, one per line (Ctrl-D ends)", file=sys.stderr)
        found = stream_translations(translator, sys.stdin.buffer, settings, args.batch_size)

    with open_output(args.output) as write:
        for index, translation in found:
            write(format_translation(index, translation, args.nbest, args.alignments))
            if args.show_attention:
                print(format_attention(index, translation), file=sys.stderr, flush=True)
            if args.plot_attention and translation.hypotheses:
                src, tgt = translation.attention_labels()
                save_attention_pngs(translation.weights(), src, tgt,
                                    args.plot_attention / f"{index:04d}",
                                    title=f"{index}: {shorten(translation.source)}")


def check_arguments(sentences: Sequence[str]) -> list[str]:
    """Arguments that are not valid UTF-8 reach Python as surrogates: refuse them by number."""
    from seq2seq.errors import DataError

    for number, sentence in enumerate(sentences, start=1):
        try:
            sentence.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"sentence argument {number} is not valid UTF-8") from None
    return list(sentences)


def stream_translations(translator: Translator, stream: BinaryIO, settings: SearchSettings,
                        batch_size: int) -> Iterator[tuple[int, Translation]]:
    """Translate a stream batch by batch, as its lines arrive; yields (0-based index, result)."""
    index = 0
    for raw_lines in ready_batches(stream, batch_size):
        lines = [decode_line(raw, index + offset + 1, "stdin")
                 for offset, raw in enumerate(raw_lines)]
        for translation in translator.search(lines, settings, batch_size, first_line=index + 1):
            yield index, translation
            index += 1


def ready_batches(stream: BinaryIO, batch_size: int) -> Iterator[list[bytes]]:
    """Lines of `stream` in batches of those already there (at most `batch_size`).

    A reader thread blocks on the stream, so a batch never waits for lines that have not come
    yet: one line sent alone is translated alone, at once, while a file piped in fills whole
    batches (the reader keeps reading while the model translates).
    """
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=4 * batch_size)
    read_chunk = _chunk_reader(stream)

    def read() -> None:
        pending = b""
        try:
            while chunk := read_chunk():
                *complete, pending = (pending + chunk).split(b"\n")
                for line in complete:
                    lines.put(line)
            if pending:  # a last line without a newline
                lines.put(pending)
        finally:
            lines.put(None)  # end of input (or a read error): stop the consumer

    threading.Thread(target=read, name="stdin-reader", daemon=True).start()
    while True:
        line = lines.get()
        if line is None:
            return
        batch = [line]
        while len(batch) < batch_size:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                yield batch
                return
            batch.append(line)
        yield batch


def _chunk_reader(stream: BinaryIO) -> Callable[[], bytes]:
    """Reads of whatever bytes are there (b"" at the end), straight from the file descriptor.

    Not through the BufferedReader: the reader thread would hold its lock while it waits for
    input, and an exit meanwhile (an error on an earlier line) aborts the interpreter.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # in-memory streams (tests)
        return lambda: stream.read1(1 << 16)
    return lambda: os.read(fd, 1 << 16)


def format_translation(index: int, translation: Translation, nbest: int,
                       alignments: str | None = None) -> list[str]:
    """One line, or with n-best exactly `nbest` TSV lines (missing ranks: empty, score -inf);
    with `alignments` each ends in ` ||| ` and its alignment (empty where there is none)."""
    texts = translation.texts or [""]  # an empty line: its empty translation is certain
    if nbest == 1:
        rows = [texts[0]]
    else:
        scores = [f"{hyp.score:.4f}" for hyp in translation.hypotheses] or ["0.0000"]
        rows = [f"{index}\t{rank}\t{score}\t{text}" for rank, (score, text)
                in enumerate(zip(scores, texts, strict=True), start=1)]
        rows += [f"{index}\t{rank}\t-inf\t" for rank in range(len(rows) + 1, nbest + 1)]
    if alignments is None:
        return rows
    found = [format_alignment(translation, rank, alignments)
             for rank in range(len(translation.hypotheses))]
    found += [""] * (len(rows) - len(found))
    return [f"{row} ||| {alignment}" for row, alignment in zip(rows, found, strict=True)]


def format_alignment(translation: Translation, rank: int, kind: str) -> str:
    """Hypothesis `rank`'s Pharaoh links ("hard") or word-level attention matrix ("soft")."""
    from seq2seq.inference.alignment import format_soft, pharaoh

    if kind == "hard":
        return pharaoh(translation.alignment(rank))
    return format_soft(translation.word_attention(rank))


def format_attention(index: int, translation: Translation) -> str:
    """`[index] tgt→src weight | ...` for the best hypothesis; `[index] (empty)` for none."""
    if not translation.hypotheses:
        return f"[{index}] (empty)"
    pairs = " | ".join(f"{tgt}→{src} {weight:.2f}"
                       for tgt, src, weight in translation.strongest_sources())
    return f"[{index}] {pairs}"


def shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    main()
