"""`python scripts/evaluate.py --checkpoint RUN --split test_2016_flickr`: score a saved model.

Prints cased BLEU and chrF with their sacreBLEU signatures, and lowercased BLEU labelled as such
(only for comparison with older papers); with `--gold-alignments FILE`, also the AER, precision
and recall of the model's attention (hard links while it force-decodes the references) against
that Pharaoh file. The source is translated exactly as translate.py does
with the same options (same batches, same output). `--split` reads a split of the corpus the
checkpoint was trained on, as its config describes it; the checkpoint's own tokenizer encodes it,
so nothing is retrained. A split held out of a one-file corpus is the one the checkpoint recorded,
found again by content in the training file.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from seq2seq.cli.common import (
    add_model_arguments,
    checkpoint_split,
    load_translator,
    open_output,
    refuse_same_files,
    run_cli,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Translate a test set with a trained checkpoint and score it with sacreBLEU "
                    "(BLEU and chrF with their signatures, plus lowercased BLEU).")
    add_model_arguments(parser)
    data = parser.add_argument_group("test set (one of)")
    data.add_argument("--split", metavar="NAME",
                      help="a split of the checkpoint's corpus: a Multi30k split "
                           "(val, test_2016_flickr, test_2017_flickr, ...) or, for a custom "
                           "corpus, train, valid or test")
    data.add_argument("--src", type=Path, metavar="FILE", help="source sentences, one per line")
    data.add_argument("--ref", type=Path, metavar="FILE", help="references, line-aligned")
    data.add_argument("--data-source", metavar="DIR",
                      help="where the corpus files are now, if not where the checkpoint's config "
                           "says (Multi30k: the .gz files; custom: the split files by name)")
    data.add_argument("--data-root", metavar="DIR",
                      help="data root to fetch Multi30k into (default: the config's data.root)")
    parser.add_argument("--gold-alignments", type=Path, metavar="FILE",
                        help="score the model's attention on the references against these gold "
                             "word alignments (Pharaoh, one line per pair, 0-based: i-j sure, "
                             "i?j or i-j-p possible): AER, precision and recall")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the hypotheses here")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write a JSON report (scores, signatures, settings) here")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.split is None) == (args.src is None and args.ref is None):
        parser.error("give either --split NAME or --src FILE --ref FILE")
    if args.split is None and (args.src is None or args.ref is None):
        parser.error("--src and --ref go together")
    refuse_same_files(parser, {"--src": args.src, "--ref": args.ref, "--output": args.output,
                               "--json": args.json, "--gold-alignments": args.gold_alignments},
                      ["--output", "--json"])
    run_cli(lambda: evaluate(args))


def evaluate(args: argparse.Namespace) -> None:
    from seq2seq.errors import DataError
    from seq2seq.files import check_output_file, read_lines
    from seq2seq.inference.scores import score

    for path, option in ((args.output, "--output"), (args.json, "--json")):
        if path is not None:
            check_output_file(path, option)
    translator = load_translator(args)
    if args.split is not None:
        pairs = checkpoint_split(translator, args.split, args.data_source, args.data_root)
        sources, references = [s for s, _ in pairs], [t for _, t in pairs]
        name = args.split
    else:
        sources, references = read_lines(args.src), read_lines(args.ref)
        if len(sources) != len(references):
            raise DataError(f"{args.src} has {len(sources)} lines but {args.ref} has "
                            f"{len(references)}: they must be line-aligned")
        name = str(args.src)
    if not sources:
        raise DataError(f"{name} is empty: nothing to evaluate")
    gold = aligner = None
    if args.gold_alignments is not None:  # refused before the long part, if it must be
        from seq2seq.analysis.aer import aligner_of, read_gold

        aligner = aligner_of(args.gold_alignments)
        gold = read_gold(args.gold_alignments, sources, references)

    settings = translator.settings(args.beam, args.length_penalty, args.max_len_ratio)
    started = time.perf_counter()
    hypotheses = translator.translate(sources, settings, args.batch_size)
    seconds = time.perf_counter() - started
    scores = score(hypotheses, references)

    print(f"{name}: {len(sources):,} sentences, beam {settings.beam_size}, "
          f"{seconds:.1f}s ({len(sources) / max(seconds, 1e-9):,.0f} sentences/s "
          f"on {translator.device}{', int8' if translator.quantization else ''})")
    print(f"BLEU  {scores.bleu:6.2f}  {scores.signatures['bleu']}")
    print(f"chrF  {scores.chrf:6.2f}  {scores.signatures['chrf']}")
    print(f"BLEU  {scores.bleu_lowercase:6.2f}  {scores.signatures['bleu_lowercase']}"
          "  (lowercased, only to compare with older papers)")
    alignment = None
    if gold is not None:
        from seq2seq.analysis.aer import alignment_record, alignment_scores, describe_record
        from seq2seq.inference.forced import forced_alignments

        alignment = alignment_record(args.gold_alignments, aligner, alignment_scores(
            forced_alignments(translator, sources, references, args.batch_size), gold))
        print(f"{describe_record(*alignment)}  (attention on the references, against "
              f"{args.gold_alignments}{', not gold links' if aligner else ''})")
    if args.output:
        with open_output(args.output) as write:
            write(hypotheses)
    if args.json:
        report = {
            "checkpoints": [str(path) for path in translator.checkpoints],
            "test_set": name,
            "sentences": len(sources),
            "search": {"beam_size": settings.beam_size,
                       "length_penalty": settings.length_penalty,
                       "max_len_ratio": settings.max_len_ratio,
                       "max_len_offset": settings.max_len_offset,
                       "batch_size": args.batch_size},
            "device": str(translator.device),
            "quantization": translator.quantization,
            "seconds": seconds,
            **scores.as_dict(),
        }
        if alignment is not None:
            key, block = alignment
            report[key] = block
        with open_output(args.json) as write:
            write([json.dumps(report, indent=2)])


if __name__ == "__main__":
    main()
