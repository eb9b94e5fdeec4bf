"""Measure training throughput and decoding speed on real Multi30k batches.

Training: target tokens per second for one full teacher-forced update (forward, label-smoothed
cross-entropy, backward, gradient clipping, Adam step), for every attention scorer and decoder
style, on the same token-budget batches for every configuration, after a few warm-up steps.
Decoding: sentences per second for greedy and beam search over val + test_2016_flickr, batched
and sorted by length as evaluation does. An untrained model rarely emits EOS and so decodes to
the length limit: pass --checkpoint to time a trained model instead.

    python scripts/benchmark.py --threads 2 --steps 10 --json benchmark.json
    python scripts/benchmark.py --scorers additive dot --styles luong --no-decode

Numbers depend on the machine and on whatever else runs on it; compare runs from one session.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from seq2seq.batching import Batch, TokenBudgetSampler, collate
from seq2seq.config import (
    AttentionConfig,
    AttentionType,
    DataConfig,
    DecoderStyle,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    to_object,
)
from seq2seq.data import PreparedData, prepare_data
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluation import SearchSettings, translate_ids
from seq2seq.loss import SequenceLoss, sequence_loss
from seq2seq.model import build_model
from seq2seq.tokenizer import Tokenizer
from seq2seq.trainer import build_optimizer

REPO = Path(__file__).resolve().parents[1]
STYLES = ("luong", "bahdanau", "luong_feeding")  # luong_feeding: luong with input feeding


@dataclass
class Variant:
    """One model configuration to time."""

    scorer: str
    style: str
    model: ModelConfig
    attention: AttentionConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--scorers", nargs="+", default=[t.value for t in AttentionType],
                        choices=[t.value for t in AttentionType])
    parser.add_argument("--styles", nargs="+", default=list(STYLES), choices=STYLES)
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


def make_variant(scorer: str, style: str, args: argparse.Namespace) -> Variant:
    """The project's own config files (conf/model/gru.yaml, conf/attention/*.yaml), resized."""
    model = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(
        REPO / "conf/model/gru.yaml"))
    model.embedding_size, model.hidden_size = args.embedding, args.hidden
    model.encoder_layers = model.decoder_layers = 1
    model.decoder_style = DecoderStyle.bahdanau if style == "bahdanau" else DecoderStyle.luong
    model.input_feeding = style == "luong_feeding"
    attention = OmegaConf.merge(OmegaConf.structured(AttentionConfig), OmegaConf.load(
        REPO / f"conf/attention/{scorer}.yaml"))
    return Variant(scorer, style, OmegaConf.to_object(model), OmegaConf.to_object(attention))


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


def time_training(variant: Variant, data: PreparedData, batches: list[Batch],
                  args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Target tokens/s over the timed steps of the trainer's update (see module docstring)."""
    torch.manual_seed(args.seed)
    vocab = data.tokenizer
    model = build_model(variant.model, variant.attention, vocab.src_vocab_size,
                        vocab.tgt_vocab_size).to(device).train()
    train_cfg = TrainConfig()  # Adam 1e-3, label smoothing 0.1, clip norm 1.0
    optimizer = build_optimizer(model, train_cfg)
    batches = [batch.to(device) for batch in batches]

    dtype = autocast_dtype(device, args.amp)
    loss_fn = SequenceLoss(model)

    def update(batch: Batch) -> None:
        # the trainer's own loss: forward (under autocast where enabled) + cross-entropy
        loss = sequence_loss(loss_fn, batch, train_cfg.label_smoothing, dtype)
        loss = loss / batch.tgt_out.ne(0).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
        optimizer.step()

    for batch in batches[: args.warmup]:
        update(batch)
    timed = batches[args.warmup:]
    tokens = sum(batch.num_tgt_tokens for batch in timed)
    synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    for batch in timed:
        update(batch)
    synchronize(device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    return {
        "scorer": variant.scorer,
        "style": variant.style,
        "params": sum(p.numel() for p in model.parameters()),
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
        variant = make_variant("additive", "luong", args)
        model = build_model(variant.model, variant.attention, data.tokenizer.src_vocab_size,
                            data.tokenizer.tgt_vocab_size)
        return model.to(device).eval(), data.tokenizer, "random additive/luong"
    from seq2seq.checkpoint import load_checkpoint

    payload = load_checkpoint(args.checkpoint)
    cfg = to_object(payload["config"])
    tokenizer = Tokenizer.from_bytes(payload["tokenizer"])
    model = build_model(cfg.model, cfg.attention, tokenizer.src_vocab_size,
                        tokenizer.tgt_vocab_size)
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
    for style in args.styles:
        for scorer in args.scorers:
            row = time_training(make_variant(scorer, style, args), data, batches, args, device)
            print(f"  {style:>13} {scorer:>9}: {row['tgt_tokens_per_s']:,.0f} target tokens/s",
                  file=sys.stderr, flush=True)
            rows.append(row)
    print_table(rows, [("style", "style", "s"), ("scorer", "scorer", "s"),
                       ("params", "params", ","), ("ms_per_step", "ms/step", ".0f"),
                       ("tgt_tokens_per_s", "tgt tok/s", ",.0f"),
                       ("tgt_tokens_per_cpu_s", "tok/cpu-s", ",.0f")])
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_data(args)
    environment = {
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor(),
        "device": str(device), "threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
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
    try:
        results = run(args)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json_path}")


if __name__ == "__main__":
    main()
