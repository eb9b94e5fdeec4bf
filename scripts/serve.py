"""Serve trained checkpoints over HTTP: see README, or `python scripts/serve.py --help`."""

from seq2seq.cli.serve import main

if __name__ == "__main__":
    main()
