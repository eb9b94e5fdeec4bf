"""`python scripts/translate.py --checkpoint RUN [SENTENCE ...]`: translate with a saved model.

Sentences come from the arguments, from `--input FILE`, or else from stdin, one per line; stdin
is streamed: each batch of the lines that have arrived is translated and flushed at once, so the
command works at the end of a pipe that sends one line at a time. Output: one line per input line
(`--nbest K`: K tab-separated lines `index, rank, score, translation` per input line). Attention
(`--show-attention`) goes to stderr, so stdout holds only translations.

argparse rather than Hydra, and torch is imported only after the arguments are parsed: `--help`
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from seq2seq.evaluation import SearchSettings
    from seq2seq.translator import Translation, Translator

DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_BATCH_SIZE = 128  # the same as seq2seq.translator.DEFAULT_BATCH_SIZE (not imported: torch)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint, search and device options shared by translate and evaluate."""
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a checkpoint file, or a run dir (uses checkpoints/best.pt)")
    search = parser.add_argument_group("search")
    search.add_argument("--beam", type=positive_int, default=5, metavar="N",
                        help="beam size; 1 is greedy search (default: %(default)s)")
    search.add_argument("--length-penalty", type=float, metavar="A",
                        help="GNMT length penalty alpha, 0 ranks by log-probability "
                             "(default: the checkpoint's train.length_penalty)")
    search.add_argument("--max-len-ratio", type=positive_float, metavar="R",
                        help="stop at R x source length + train.max_len_offset tokens "
                             "(default: the checkpoint's train.max_len_ratio)")
    search.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        metavar="N", help="sentences decoded together (default: %(default)s)")
    search.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto takes cuda, then mps, then cpu (default: %(default)s)")
    search.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads (default: torch's, one per core)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="translate",
        description="Translate sentences with a trained checkpoint (its tokenizer and config "
                    "are inside it). Input: the SENTENCE arguments, --input FILE, or stdin, one "
                    "sentence per line; output: one translation per line, in input order.",
        epilog="With --nbest K each input line gives K lines: 0-based input index, rank "
               "(1 = best), score (log-probability divided by the GNMT length penalty; higher is "
               "better) and translation, separated by TABs. --show-attention prints, per "
               "sentence to stderr, the source subword each target subword attends to most "
               "(heads averaged) and its weight.")
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
    parser.add_argument("--show-attention", action="store_true",
                        help="print the most attended source subword of each target subword "
                             "to stderr")
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sentences and args.input:
        parser.error("give sentences as arguments or --input FILE, not both")
    if args.nbest > args.beam:
        parser.error(f"--nbest {args.nbest} needs --beam {args.nbest} or more")
    run_cli(lambda: translate(args))


def run_cli(command: Callable[[], None]) -> None:
    """Run a command: user errors as `error: ...` with exit code 1, never a traceback."""
    # Decoding is thousands of small ops. OpenMP's default wait policy keeps idle threads
    # spinning, and on a CPU shared with other work a spinning thread that lost its core stalls
    # every op (2 busy cores: 3-5x the wall time, measured); passive threads sleep instead. It
    # must be set before torch is first imported; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    setup_logging()
    from seq2seq.errors import Seq2SeqError  # no torch

    try:
        command()
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `... | head -1`: the reader left, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)


def setup_logging() -> None:
    """Library warnings (e.g. a truncated source) as `warning: ...` on stderr."""
    logger = logging.getLogger("seq2seq")
    logger.setLevel(logging.INFO)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (tests replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        record.levelname = record.levelname.lower()
        print(self.format(record), file=sys.stderr, flush=True)


def load_translator(args: argparse.Namespace) -> Translator:
    """The checkpoint's model on its device, with `--threads` CPU threads."""
    import torch

    from seq2seq.translator import Translator

    if args.threads:
        torch.set_num_threads(args.threads)
    return Translator.from_checkpoint(args.checkpoint, args.device)


def translate(args: argparse.Namespace) -> None:
    from seq2seq.corpus import read_lines

    translator = load_translator(args)
    settings = translator.settings(args.beam, args.length_penalty, args.max_len_ratio,
                                   args.nbest)
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
            write(format_translation(index, translation, args.nbest))
            if args.show_attention:
                print(format_attention(index, translation), file=sys.stderr, flush=True)
            if args.plot_attention and translation.hypotheses:
                translation.plot_attention(args.plot_attention / f"{index:04d}",
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


def decode_line(raw: bytes, number: int, source: str) -> str:
    """One line of bytes as text, strictly UTF-8; an error names the line."""
    from seq2seq.errors import DataError

    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{source}, line {number}: invalid UTF-8 (byte {error.start}: "
                        f"{error.reason}); convert the input to UTF-8") from None
    return text.rstrip("\r\n")


@contextmanager
def open_output(path: Path | None) -> Iterator[Callable[[list[str]], None]]:
    """A function that writes lines: to stdout, flushed at once; or to a temp file beside `path`
    that replaces it only when everything is written (an error leaves no half-written file)."""
    if path is None:
        def write_stdout(lines: list[str]) -> None:
            sys.stdout.buffer.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
            sys.stdout.buffer.flush()

        yield write_stdout
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield lambda lines: out.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def format_translation(index: int, translation: Translation, nbest: int) -> list[str]:
    """One line, or with n-best exactly `nbest` TSV lines (missing ranks: empty, score -inf)."""
    if nbest == 1:
        return [translation.text]
    if not translation.hypotheses:  # an empty line: its empty translation is certain
        return [f"{index}\t1\t0.0000\t"] + [f"{index}\t{rank}\t-inf\t"
                                            for rank in range(2, nbest + 1)]
    rows = [f"{index}\t{rank}\t{hyp.score:.4f}\t{text}" for rank, (hyp, text)
            in enumerate(zip(translation.hypotheses, translation.texts, strict=True), start=1)]
    return rows + [f"{index}\t{rank}\t-inf\t" for rank in range(len(rows) + 1, nbest + 1)]


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
