"""Measure what a large corpus costs: preparation time and peak memory, and a training run's
start on a cache hit, on synthetic corpora made of Multi30k's training pairs repeated.

    python scripts/scale_benchmark.py                       # 1M and 4.5M pairs (35x, 155x)
    python scripts/scale_benchmark.py --repeats 35 --train-minutes 5

Each corpus is `data=custom` with Multi30k de-en train repeated N times as plain text files
(35x: 1,015,000 pairs, IWSLT to WMT'16 size; 155x: 4,495,000, WMT'14 en-de size), and Multi30k
val and test_2016_flickr as its valid and test files. For each, in fresh processes:
  1. `prepare_data.py` into an empty data.root: wall time and peak RSS;
  2. `prepare_data.py` again (tokenizer and encoded corpus cached): wall time and peak RSS;
  3. a process that builds the trainer (experiment=cpu40 settings) on the cache and takes one
     training step: wall time from launch to exit (Python and torch imports included);
  4. with --train-minutes M: `train.py experiment=cpu40 train.max_minutes=M` on the corpus and
     on Multi30k itself, and their peak RSS (training, the last validation and the test).
Peak RSS is each child's own (os.wait4). Timings on a shared machine vary: run nothing else.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from seq2seq.machine import this_machine

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SRC, TGT = "de", "en"


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, nargs="+", default=[35, 155],
                        help="corpus sizes as repeats of Multi30k train (default 35 155)")
    parser.add_argument("--data-source", type=Path,
                        default=REPO.parent / "shared/corpora/multi30k",
                        help="directory with the Multi30k {split}.{lang}.gz files")
    parser.add_argument("--work-dir", type=Path,
                        help="where corpora, prepared data and runs go (default: a temporary "
                             "directory, removed afterwards; 4.5M pairs take about 2 GB)")
    parser.add_argument("--train-minutes", type=float, default=0,
                        help="also train experiment=cpu40 this long on each corpus and on "
                             "Multi30k, and compare peak RSS (default 0: no training runs)")
    args = parser.parse_args(argv)
    if not (args.data_source / f"train.{SRC}.gz").is_file():
        parser.error(f"--data-source {args.data_source} holds no train.{SRC}.gz")
    if any(n < 1 for n in args.repeats):
        parser.error("--repeats must be >= 1")
    return args


def run_child(command: list[str], log: Path) -> Measured:
    """Run `command` to its end with its output in `log`; its wall time and its own peak RSS."""
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        sys.exit(f"{' '.join(command)} failed ({code}); the end of {log}:\n{tail}")
    return Measured(seconds, usage.ru_maxrss / 1024)  # Linux reports KiB


def build_corpus(source: Path, repeats: int, directory: Path) -> int:
    """Multi30k train repeated `repeats` times as plain train.de / train.en; returns pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    for lang in (SRC, TGT):
        with gzip.open(source / f"train.{lang}.gz", "rb") as stream:
            text = stream.read()
        with open(directory / f"train.{lang}", "wb") as out:
            for _ in range(repeats):
                out.write(text)
    return text.count(b"\n") * repeats


def corpus_overrides(source: Path, corpus: Path, root: Path, name: str) -> list[str]:
    return [
        "data=custom", f"data.name={name}", f"data.src_lang={SRC}", f"data.tgt_lang={TGT}",
        f"data.root={root}",
        f"data.train_files.src={corpus / f'train.{SRC}'}",
        f"data.train_files.tgt={corpus / f'train.{TGT}'}",
        f"data.valid_files.src={source / f'val.{SRC}.gz'}",
        f"data.valid_files.tgt={source / f'val.{TGT}.gz'}",
        f"data.test_files.src={source / f'test_2016_flickr.{SRC}.gz'}",
        f"data.test_files.tgt={source / f'test_2016_flickr.{TGT}.gz'}",
    ]


def first_step(overrides: list[str]) -> None:
    """(Child mode) build the trainer on the prepared corpus and take one training step."""
    from seq2seq.cli.common import compose_config
    from seq2seq.config import to_object
    from seq2seq.data.batching import collate
    from seq2seq.training.setup import build_trainer

    cfg = to_object(compose_config(overrides))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir))
        indices = next(iter(trainer.sampler))
        trainer.train_step(collate([trainer.data.train[i] for i in indices]).to(trainer.device))
        trainer.board.close()
    print(f"first step done: {len(indices)} pairs", flush=True)


def measure_corpus(args: argparse.Namespace, repeats: int, work: Path) -> dict[str, object]:
    corpus = work / f"x{repeats}"
    pairs = build_corpus(args.data_source, repeats, corpus)
    overrides = corpus_overrides(args.data_source, corpus, work / f"root-x{repeats}",
                                 f"multi30k-x{repeats}")
    prepare = [sys.executable, str(SCRIPTS / "prepare_data.py"), *overrides]
    print(f"{pairs:,} pairs (Multi30k train x{repeats}): preparing", flush=True)
    row: dict[str, object] = {"corpus": f"x{repeats}", "pairs": pairs,
                              "prepare": run_child(prepare, work / f"prepare-x{repeats}.log"),
                              "cache_hit": run_child(prepare, work / f"again-x{repeats}.log")}
    step = [sys.executable, __file__, "--first-step", *overrides, "experiment=cpu40"]
    row["first_step"] = run_child(step, work / f"first-step-x{repeats}.log")
    if args.train_minutes:
        row["train"] = train_run(overrides, args, work, f"x{repeats}")
    return row


def train_run(overrides: list[str], args: argparse.Namespace, work: Path, name: str) -> Measured:
    print(f"training experiment=cpu40 for {args.train_minutes:g} min on {name}", flush=True)
    command = [sys.executable, str(SCRIPTS / "train.py"), *overrides, "experiment=cpu40",
               f"train.max_minutes={args.train_minutes}", f"hydra.run.dir={work / f'run-{name}'}"]
    return run_child(command, work / f"train-{name}.log")


def report(rows: list[dict[str, object]], baseline: Measured | None) -> None:
    print(f"\nmachine: {this_machine().line()}")
    print("corpus        pairs   prepare s  peak MB   cache hit s  peak MB   first step s  "
          "peak MB" + ("   train peak MB" if baseline else ""))
    for row in rows:
        cells = [f"{row['corpus']:<8}{row['pairs']:>11,}"]
        for key in ("prepare", "cache_hit", "first_step"):
            measured = row[key]
            cells.append(f"{measured.seconds:>11.1f}{measured.peak_rss_mb:>9,.0f}")
        if baseline:
            cells.append(f"{row['train'].peak_rss_mb:>10,.0f} "
                         f"({row['train'].peak_rss_mb - baseline.peak_rss_mb:+,.0f})")
        print("   ".join(cells))
    if baseline:
        print(f"train peak MB in brackets: against {baseline.peak_rss_mb:,.0f} MB for the same "
              "run on Multi30k")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--first-step"]:
        first_step(argv[1:])
        return
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scale-benchmark-") as temporary:
        work = args.work_dir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        baseline = None
        if args.train_minutes:
            multi30k = [f"data.source={args.data_source}", f"data.root={work / 'root-multi30k'}"]
            baseline = train_run(multi30k, args, work, "multi30k")
        rows = [measure_corpus(args, repeats, work) for repeats in args.repeats]
        report(rows, baseline)


if __name__ == "__main__":
    main()
