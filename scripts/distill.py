"""Distil teachers into a training corpus: see README, or `python scripts/distill.py --help`."""

from seq2seq.cli.distill import main

if __name__ == "__main__":
    main()
