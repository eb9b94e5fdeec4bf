"""Score a trained checkpoint on a test set: see README, or `python scripts/evaluate.py --help`."""

from seq2seq.cli.evaluate import main

if __name__ == "__main__":
    main()
