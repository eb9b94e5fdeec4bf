"""`python scripts/distill.py --checkpoint RUN [--checkpoint RUN2 ...] --output DIR`: translate the
training split of the teachers' corpus with beam search, for sequence-level knowledge distillation.

DIR becomes a corpus that `data=custom` reads (and `experiment=distill_cpu40 data.source=DIR`
trains a student on): `train.SRC` and `train.TGT` hold the training sources and the teachers'
translations, one line per training pair (with `--mix-references`, then the same sources again
with their references), `valid.*` and `test.*` the corpus's own validation and test pairs, with
their references, so that the student is chosen and scored on real translations. `distill.json`
records the teachers, the search and how close the translations are to the references. A stopped
run (Ctrl-C, SIGTERM, a crash) goes on where it stopped when the same command runs again: its
finished batches are in DIR/journal.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seq2seq.cli.common import add_model_arguments, checkpoint_split, load_translator, run_cli

if TYPE_CHECKING:
    from seq2seq.config import DataConfig

JOURNAL = "journal.jsonl"
RECORD = "distill.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Translate the training split of the checkpoints' corpus with beam search "
                    "(several checkpoints: their ensemble) into a corpus folder for training a "
                    "student (sequence-level knowledge distillation, Kim & Rush 2016).",
        epilog="Then: python scripts/train.py experiment=distill_cpu40 data.source=DIR (or "
               "data=custom with DIR's files). Running the same command again after a stop "
               "goes on from the batches already done.")
    add_model_arguments(parser)
    parser.add_argument("--output", type=Path, required=True, metavar="DIR",
                        help="the corpus folder to write (train, valid and test files)")
    parser.add_argument("--mix-references", action="store_true",
                        help="train on the teachers' translations and the references: each "
                             "training source appears twice in train.*, once with each")
    parser.add_argument("--data-source", metavar="DIR",
                        help="where the corpus files are now, if not where the checkpoint's "
                             "config says (Multi30k: the .gz files; custom: the files by name)")
    parser.add_argument("--data-root", metavar="DIR",
                        help="data root to fetch Multi30k into (default: the config's data.root)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_cli(lambda: distill_corpus(args))


def distill_corpus(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from seq2seq.errors import DataError
    from seq2seq.files import atomic_write_text, check_output_dir, held_lock
    from seq2seq.inference.distillation import distill
    from seq2seq.inference.scores import score

    check_output_dir(args.output, "--output")
    translator = load_translator(args)
    cfg = translator.config.data
    train, valid, test = (checkpoint_split(translator, split, args.data_source, args.data_root)
                          for split in split_names(cfg))
    if not train:
        raise DataError("the training split is empty: nothing to distill")
    sources, references = sides(train)
    settings = translator.settings(args.beam, args.length_penalty, args.max_len_ratio)
    args.output.mkdir(parents=True, exist_ok=True)
    journal = args.output / JOURNAL
    with held_lock(args.output / ".lock", f"distilling into {args.output}"):
        started = time.perf_counter()
        finished: list[int] = []  # lines done, as distill reports them

        with tqdm(total=len(sources), unit="line", desc="distilling", disable=None) as bar:
            def progress(lines: int) -> None:
                finished.append(lines)
                bar.update(lines)

            try:
                translations = distill(translator, sources, settings, args.batch_size, journal,
                                       progress)
            except (KeyboardInterrupt, SystemExit):
                bar.close()
                print(f"stopped after {sum(finished):,} of {len(sources):,} lines: the same "
                      "command goes on from there", flush=True)
                raise
        seconds = time.perf_counter() - started
        src, tgt = cfg.src_lang, cfg.tgt_lang
        train_src, train_tgt = sources, translations
        if args.mix_references:
            train_src, train_tgt = sources + sources, translations + references
        for split, src_lines, tgt_lines in (("train", train_src, train_tgt),
                                            ("valid", *sides(valid)), ("test", *sides(test))):
            atomic_write_text(args.output / f"{split}.{src}", lines_text(src_lines))
            atomic_write_text(args.output / f"{split}.{tgt}", lines_text(tgt_lines))
        closeness = score(translations, references)
        record = {
            "teachers": [str(path) for path in translator.checkpoints],
            "quantization": translator.quantization,
            "search": {"beam_size": settings.beam_size,
                       "length_penalty": settings.length_penalty,
                       "max_len_ratio": settings.max_len_ratio, "batch_size": args.batch_size},
            "corpus": {"name": cfg.name, "src_lang": src, "tgt_lang": tgt,
                       "train_pairs": len(train), "valid_pairs": len(valid),
                       "test_pairs": len(test), "mix_references": args.mix_references},
            "seconds_this_run": seconds,
            "train_against_references": closeness.as_dict(),
        }
        atomic_write_text(args.output / RECORD, json.dumps(record, indent=2) + "\n")
        journal.unlink()
    print(f"{len(train):,} training sources translated; the translations score BLEU "
          f"{closeness.bleu:.2f} against the references. Train a student with: "
          f"python scripts/train.py experiment=distill_cpu40 data.source={args.output}")


def split_names(cfg: DataConfig) -> tuple[str, str, str]:
    """The corpus's training, validation and test split, as `read_split` names them."""
    from seq2seq.config import CorpusKind

    if cfg.corpus is CorpusKind.multi30k:
        return cfg.train_split, cfg.valid_split, cfg.test_split
    return "train", "valid", "test"


def sides(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [src for src, _ in pairs], [tgt for _, tgt in pairs]


def lines_text(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


if __name__ == "__main__":
    main()
