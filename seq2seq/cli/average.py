"""`python scripts/average.py CHECKPOINT CHECKPOINT ... --output AVERAGED.pt`: average weights.

Writes a new self-contained checkpoint (config, subword models, weights; no optimizer state)
whose weights are the element-wise mean of the given checkpoints', which must be of one model
(see seq2seq.training.averaging). `translate.py`, `evaluate.py` and `serve.py` load it like any
other.
A mismatch, a missing or corrupt checkpoint prints one line on stderr and exits with code 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seq2seq.cli.common import user_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="average", description=__doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="checkpoint files (or run dirs: their final model, "
                             "checkpoints/best.pt or averaged.pt)")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="FILE",
                        help="the averaged checkpoint to write (atomically)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        from seq2seq.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
        from seq2seq.files import check_output_file
        from seq2seq.training.averaging import average_payloads

        check_output_file(args.output, "--output")
        paths = [resolve_checkpoint(path) for path in args.checkpoints]
        payload = average_payloads((load_checkpoint(path) for path in paths),
                                   [str(path) for path in paths])
        save_checkpoint(payload, args.output)
    steps = ", ".join(str(step) for step in payload["state"]["averaged_steps"])
    print(f"averaged {len(paths)} checkpoints (steps {steps}) into {args.output}")


if __name__ == "__main__":
    main()
