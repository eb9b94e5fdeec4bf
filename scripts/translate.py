"""Translate with a trained checkpoint: see README, or `python scripts/translate.py --help`."""

from seq2seq.cli.translate import main

if __name__ == "__main__":
    main()
