"""Fetch, verify and tokenize a corpus: `python scripts/prepare_data.py [hydra overrides]`."""

from seq2seq.cli.prepare_data import main

if __name__ == "__main__":
    main()
