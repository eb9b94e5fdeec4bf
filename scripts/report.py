"""Compare the runs of a sweep: `python scripts/report.py SWEEP_DIR` (see README)."""

from seq2seq.cli.report import main

if __name__ == "__main__":
    main()
