"""Measure training throughput and decoding speed on real Multi30k batches.

Training: target tokens per second of the trainer's own update (`Trainer.train_step`: forward,
label-smoothed cross-entropy, backward, gradient clipping, Adam step), for every attention scorer
and decoder (the attention and decoder groups of the configs), on the same token-budget batches
for every configuration, after a few warm-up steps.
Decoding: sentences per second for greedy and beam search over val + test_2016_flickr, batched
and sorted by length as evaluation does. An untrained model rarely emits EOS and so decodes to
the length limit: pass --checkpoint to time a trained model instead.

    python scripts/benchmark.py --threads 2 --steps 10 --json benchmark.json
    python scripts/benchmark.py --scorers additive dot --decoders luong --no-decode

Numbers depend on the machine and on whatever else runs on it; compare runs from one session.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from seq2seq.cli.common import compose_config, user_errors
from seq2seq.config import ATTENTION_CONFIGS, Config, DataConfig, TokenizerConfig, to_object
from seq2seq.data.batching import Batch, TokenBudgetSampler, collate
from seq2seq.data.prepare import PreparedData, prepare_data
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.inference.decoding import SearchSettings, translate_ids
from seq2seq.machine import this_machine
from seq2seq.nn.model import build_model, saved_output_ids
from seq2seq.runtime import select_device
from seq2seq.training.setup import build_trainer

REPO = Path(__file__).resolve().parents[1]
DECODERS = sorted(path.name.removesuffix(".yaml")
                  for path in files("seq2seq.conf").joinpath("decoder").iterdir()
                  if path.name.endswith(".yaml"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"),
                        help="where to run (default cpu)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--scorers", nargs="+", default=list(ATTENTION_CONFIGS),
                        choices=list(ATTENTION_CONFIGS))
    parser.add_argument("--decoders", nargs="+", default=DECODERS, choices=DECODERS)
    parser.add_argument("--embedding", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-tokens", type=int, default=6000,
                        help="training token budget per batch, padding included (default 6000)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                        help="bf16 autocast on CUDA where supported (ignored on the CPU)")
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                        help="time training updates (default on)")
    parser.add_argument("--decode", action=argparse.BooleanOptionalAction, default=True,
                        help="also time greedy and beam search (default on)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--decode-batch-tokens", type=int, default=4000,
                        help="source tokens per decoding batch (default 4000)")
    parser.add_argument("--checkpoint", help="decode with this trained model (file or run dir) "
                                             "instead of a random additive/luong model")
    parser.add_argument("--data-source", default=str(REPO.parent / "shared/corpora/multi30k"),
                        help="directory with the Multi30k {split}.{lang}.gz files")
    parser.add_argument("--data-root", default=str(REPO / "data"),
                        help="where the tokenizer is trained once and cached")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", dest="json_path", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    return args


def load_data(args: argparse.Namespace) -> PreparedData:
    """Multi30k de-en with a joint 8k unigram vocabulary, as the default training run uses."""
    cfg = DataConfig(source=args.data_source, root=args.data_root,
                     tokenizer=TokenizerConfig(joint=True, vocab_size=8000))
    return prepare_data(cfg, args.batch_tokens)


def variant_config(scorer: str, decoder: str, args: argparse.Namespace) -> Config:
    """The project's own configs (attention=SCORER decoder=DECODER), resized."""
    return to_object(compose_config([
        f"attention={scorer}", f"decoder={decoder}", f"seed={args.seed}", f"device={args.device}",
        f"model.embedding_size={args.embedding}", f"model.hidden_size={args.hidden}",
        f"train.batch_tokens={args.batch_tokens}", f"train.amp={args.amp}",
        "train.log_every=1000000",  # no TensorBoard writes while timing
    ]))


def training_batches(data: PreparedData, args: argparse.Namespace) -> list[Batch]:
    """The first warm-up + timed batches of a shuffled epoch; every variant gets the same ones."""
    sampler = TokenBudgetSampler(data.train.src_lengths, data.train.tgt_lengths,
                                 args.batch_tokens, shuffle=True, seed=args.seed)
    needed = args.warmup + args.steps
    indices = list(sampler)
    indices = (indices * (needed // len(indices) + 1))[:needed]
    return [collate([data.train[i] for i in batch]) for batch in indices]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 on a CUDA device that has it (no loss scaling needed), else full precision."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool):
    dtype = autocast_dtype(device, enabled)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def time_training(scorer: str, decoder: str, data: PreparedData, batches: list[Batch],
                  args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Target tokens/s over the timed steps of the trainer's own update."""
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(variant_config(scorer, decoder, args), Path(run_dir), data)
        batches = [batch.to(device) for batch in batches]
        for batch in batches[: args.warmup]:
            trainer.train_step(batch)
        timed = batches[args.warmup:]
        tokens = sum(batch.num_tgt_tokens for batch in timed)
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        for batch in timed:
            trainer.train_step(batch)
        synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        trainer.board.close()
    return {
        "scorer": scorer,
        "decoder": decoder,
        "params": trainer.model.parameter_counts()["total"],
        "steps": len(timed),
        "tgt_tokens": tokens,
        "seconds": seconds,
        "ms_per_step": 1000 * seconds / len(timed),
        "tgt_tokens_per_s": tokens / seconds,
        # CPU time of this process (all threads): steadier than wall time on a shared machine
        "cpu_seconds": cpu_seconds,
        "tgt_tokens_per_cpu_s": tokens / cpu_seconds,
    }


def decoding_model(args: argparse.Namespace, data: PreparedData,
                   device: torch.device) -> tuple[torch.nn.Module, Tokenizer, str]:
    """A trained model from --checkpoint, else a random additive / luong model."""
    if not args.checkpoint:
        torch.manual_seed(args.seed)
        cfg = variant_config("additive", "luong", args)
        model = build_model(cfg.model, cfg.attention, data.tokenizer.src_vocab_size,
                            data.tokenizer.tgt_vocab_size)
        return model.to(device).eval(), data.tokenizer, "random additive/luong"
    from seq2seq.checkpoint import load_checkpoint

    payload = load_checkpoint(args.checkpoint)
    cfg = to_object(payload["config"])
    tokenizer = Tokenizer.from_bytes(payload["tokenizer"])
    model = build_model(cfg.model, cfg.attention, tokenizer.src_vocab_size,
                        tokenizer.tgt_vocab_size, saved_output_ids(payload["model"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), tokenizer, f"checkpoint {args.checkpoint}"


def time_decoding(args: argparse.Namespace, data: PreparedData,
                  device: torch.device) -> list[dict[str, Any]]:
    """Sentences/s of greedy and beam search over val + test, as evaluation decodes them."""
    model, tokenizer, description = decoding_model(args, data, device)
    sources = data.valid.src + data.test.src
    src_ids = tokenizer.encode_src(sources)
    rows = []
    for beam_size in (1, args.beam_size):
        settings = SearchSettings(beam_size=beam_size, batch_tokens=args.decode_batch_tokens)
        with autocast(device, args.amp):
            translate_ids(model, src_ids[:8], settings, device)  # warm-up
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            found = translate_ids(model, src_ids, settings, device)
            synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        out_tokens = sum(len(hyps[0].tokens) for hyps in found)
        rows.append({
            "model": description,
            "search": "greedy" if beam_size == 1 else f"beam {beam_size}",
            "sentences": len(src_ids),
            "seconds": seconds,
            "sentences_per_s": len(src_ids) / seconds,
            "cpu_seconds": cpu_seconds,
            "mean_output_len": out_tokens / len(src_ids),
            "mean_source_len": sum(map(len, src_ids)) / len(src_ids),
        })
        print(f"  {rows[-1]['search']}: {rows[-1]['sentences_per_s']:.1f} sentences/s",
              file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format spec)."""
    cells = [[format(row[key], spec) for key, _, spec in columns] for row in rows]
    widths = [max(len(header), *(len(c[i]) for c in cells))
              for i, (_, header, _) in enumerate(columns)]
    print("  ".join(header.rjust(w) for (_, header, _), w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


def time_all_training(args: argparse.Namespace, data: PreparedData,
                      device: torch.device) -> list[dict[str, Any]]:
    batches = training_batches(data, args)
    mean_tokens = sum(batch.num_tgt_tokens for batch in batches) / len(batches)
    print(f"training: {args.steps} timed steps after {args.warmup} warm-up, batches of "
          f"{args.batch_tokens} tokens ({mean_tokens:.0f} target tokens on average), embedding "
          f"{args.embedding}, hidden {args.hidden}, {torch.get_num_threads()} threads, {device}",
          flush=True)
    rows = []
    for decoder in args.decoders:
        for scorer in args.scorers:
            row = time_training(scorer, decoder, data, batches, args, device)
            print(f"  {decoder:>19} {scorer:>9}: {row['tgt_tokens_per_s']:,.0f} target tokens/s",
                  file=sys.stderr, flush=True)
            rows.append(row)
    print_table(rows, [("decoder", "decoder", "s"), ("scorer", "scorer", "s"),
                       ("params", "params", ","), ("ms_per_step", "ms/step", ".0f"),
                       ("tgt_tokens_per_s", "tgt tok/s", ",.0f"),
                       ("tgt_tokens_per_cpu_s", "tok/cpu-s", ",.0f")])
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    data = load_data(args)
    machine = this_machine(torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    environment = {
        "torch": torch.__version__, "python": platform.python_version(),
        "architecture": platform.machine(), "machine": machine.record(),
        "device": str(device), "threads": torch.get_num_threads(),
    }
    print(f"machine: {machine.line()}; {torch.get_num_threads()} torch threads, {device}")
    results: dict[str, Any] = {"settings": vars(args), "environment": environment,
                               "training": [], "decoding": []}
    if args.train:
        results["training"] = time_all_training(args, data, device)
    if args.decode:
        results["decoding"] = time_decoding(args, data, device)
        print()
        print_table(results["decoding"], [
            ("model", "model", "s"), ("search", "search", "s"), ("sentences", "sents", "d"),
            ("seconds", "seconds", ".1f"), ("cpu_seconds", "cpu-s", ".1f"),
            ("sentences_per_s", "sents/s", ".1f"),
            ("mean_source_len", "src len", ".1f"), ("mean_output_len", "out len", ".1f")])
    return results


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are measured, even in a log
    args = parse_args(argv)
    with user_errors():
        results = run(args)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json_path}")


if __name__ == "__main__":
    main()
