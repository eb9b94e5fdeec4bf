"""`python scripts/report.py SWEEP_DIR`: compare the runs of a sweep in one table.

Reads every run's results.json under SWEEP_DIR (the sweep dir of `train.py -m`, or any folder of
runs), groups the runs that differ only in their seed, and writes SWEEP_DIR/report.md (mean ± std
over seeds, best in bold) and SWEEP_DIR/report.png (bars with error bars); prints the table.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from seq2seq.cli.common import user_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a sweep dir, e.g. multirun/DATE/TIME")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where report.md and report.png go (default: SWEEP_DIR)")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY",
                        help="an override key that does not make a different setting, besides "
                             "seed, data.source, data.root, train.resume and hydra.* "
                             "(repeatable), e.g. --ignore train.num_threads")
    parser.add_argument("--no-plot", action="store_true", help="write report.md only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from seq2seq.analysis.report import build_report, markdown_table, write_report

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        report = build_report(args.sweep_dir, ignore=args.ignore)
        written = write_report(report, args.output_dir or args.sweep_dir, plot=not args.no_plot)
    print(markdown_table(report.settings))
    for note in report.notes:
        print(f"warning: {note}")
    for job in report.missing:
        print(f"missing: {job.path}: {job.problem}")
    for path in written.values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
