"""`python scripts/average.py CHECKPOINT CHECKPOINT ... --output AVERAGED.pt`: average weights.

Writes a new self-contained checkpoint (config, subword models, weights; no optimizer state)
whose weights are the element-wise mean of the given checkpoints', which must be of one model
(see seq2seq.training.averaging). `translate.py`, `evaluate.py` and `serve.py` load it like any
other.
A mismatch, a missing or corrupt checkpoint, one with NaN or infinite weights, one that is
itself an average, or one given twice prints one line on stderr and exits with code 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seq2seq.cli.common import user_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1].replace("\n", " "))
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
        from seq2seq.errors import CheckpointError
        from seq2seq.files import check_output_file
        from seq2seq.training.averaging import average_payloads

        check_output_file(args.output, "--output")
        paths = [resolve_checkpoint(path) for path in args.checkpoints]
        twice = [path for i, path in enumerate(paths)
                 if path.resolve() in {seen.resolve() for seen in paths[:i]}]
        if twice:
            raise CheckpointError(f"{twice[0]} is given twice: it would weigh twice as much as "
                                  "the others in the average; give each checkpoint once")
        payload = average_payloads((not_averaged(load_checkpoint(path), path) for path in paths),
                                   [str(path) for path in paths])
        save_checkpoint(payload, args.output)
    steps = ", ".join(str(step) for step in payload["state"]["averaged_steps"])
    print(f"averaged {len(paths)} checkpoints (steps {steps}) into {args.output}")


def not_averaged(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """`payload`, unless it is itself an average: averaged again, each checkpoint it was made
    from would weigh less than the others (an average of 3 beside 1 raw one: 1/6 each vs 1/2)."""
    averaged_from = payload.get("state", {}).get("averaged_from")
    if averaged_from is not None:
        from seq2seq.errors import CheckpointError

        raise CheckpointError(
            f"{path} is itself an average of {len(averaged_from)} checkpoints: averaging it "
            "again would weigh those less than the others; average the checkpoints it was made "
            "from instead")
    return payload


if __name__ == "__main__":
    main()
