"""`python scripts/align.py --pair SRC TGT OUTPUT [--pair ...]`: reference word alignments.

Aligns every given pair of files (one sentence per line, plain or gzipped) with eflomal in one
model, both directions symmetrised, and writes one Pharaoh line (`i-j`, 0-based source and
target words) per sentence pair to each OUTPUT, atomically: N lines in, N out, an empty line for
a pair with an empty side; beside it OUTPUT.aligner.json names the aligner, so that scores
against the file are called agreement with eflomal, not AER. Give the training files with the
splits to be scored: the aligner is unsupervised and learns from all of them (see
seq2seq.analysis.reference_aligner). A missing or unreadable file, or two files of one pair with
different line counts, print one line on stderr and exit with code 1.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path

from seq2seq.cli.common import user_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from seq2seq.analysis.reference_aligner import DEFAULT_SYMMETRISATION, SYMMETRISATIONS

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("--pair", nargs=3, action="append", required=True, type=Path,
                        metavar=("SRC", "TGT", "OUTPUT"),
                        help="a source file, its target file and the Pharaoh file to write; "
                             "repeat for several splits")
    parser.add_argument("--symmetrisation", choices=SYMMETRISATIONS,
                        default=DEFAULT_SYMMETRISATION,
                        help="how the two directions' links are joined (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        from seq2seq.analysis.aer import aligner_record
        from seq2seq.analysis.reference_aligner import align_pairs
        from seq2seq.errors import DataError
        from seq2seq.files import atomic_write_text, check_output_file, read_lines
        from seq2seq.inference.alignment import pharaoh

        for _, _, output in args.pair:
            check_output_file(output, "OUTPUT")
        sources, targets, sizes = [], [], []
        for src, tgt, _ in args.pair:
            src_lines, tgt_lines = read_lines(src), read_lines(tgt)
            if len(src_lines) != len(tgt_lines):
                raise DataError(f"{src} has {len(src_lines)} lines but {tgt} has "
                                f"{len(tgt_lines)}: a pair needs one target line per source")
            sources += src_lines
            targets += tgt_lines
            sizes.append(len(src_lines))
        started = time.perf_counter()
        links = align_pairs(sources, targets, args.symmetrisation)
        seconds = time.perf_counter() - started
        start = 0
        for (_, _, output), size in zip(args.pair, sizes, strict=True):
            split = links[start:start + size]
            atomic_write_text(output, "".join(pharaoh(pair) + "\n" for pair in split))
            # what made the links: scores against them are agreement with eflomal, not AER
            atomic_write_text(aligner_record(output), json.dumps(
                {"aligner": "eflomal", "version": version("eflomal"),
                 "symmetrisation": args.symmetrisation, "pairs": size}, indent=1) + "\n")
            print(f"{output}: {size} pairs, {sum(map(len, split))} links")
            start += size
    print(f"aligned {len(sources)} pairs with eflomal ({args.symmetrisation}) in {seconds:.1f}s")
