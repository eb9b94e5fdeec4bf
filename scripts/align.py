"""Reference word alignments with eflomal: `python scripts/align.py --pair SRC TGT OUT ...`."""

from seq2seq.cli.align import main

if __name__ == "__main__":
    main()
