"""Average checkpoints of one run: `python scripts/average.py A.pt B.pt --output avg.pt`."""

from seq2seq.cli.average import main

if __name__ == "__main__":
    main()
