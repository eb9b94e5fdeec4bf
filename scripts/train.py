"""Train a translation model: `python scripts/train.py [hydra overrides]` (see README)."""

from seq2seq.cli.train import main

if __name__ == "__main__":
    main()
