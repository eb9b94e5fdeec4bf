"""Assembling a run: `build_trainer(cfg, run_dir)` makes everything a run needs (device, data,
model, optimizer, schedule, a resumed run's state, TensorBoard), in an order that makes it
reproducible, and hands it to the `Trainer`."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from seq2seq.config import Config
from seq2seq.data.prepare import PreparedData, prepare_data
from seq2seq.errors import TrainingError
from seq2seq.machine import this_machine
from seq2seq.nn.model import Seq2Seq, build_model
from seq2seq.runtime import (
    make_deterministic,
    reset_peak_rss,
    seed_everything,
    select_device,
    set_threads,
)
from seq2seq.training.batches import training_sampler
from seq2seq.training.distributed import Distributed, init_distributed
from seq2seq.training.optim import BudgetShare, build_optimizer, build_scheduler
from seq2seq.training.precision import precision_name, training_autocast_dtype
from seq2seq.training.progress import ETA_STEP
from seq2seq.training.resume import load_resume_payload, restore_training
from seq2seq.training.state import TrainState, check_not_done
from seq2seq.training.tensorboard import Board
from seq2seq.training.trainer import Trainer

log = logging.getLogger(__name__)

CPU_HIDDEN_SIZE = 256  # larger models are sized for a GPU: training one on a CPU gets a warning


def build_trainer(cfg: Config, run_dir: Path, data: PreparedData | None = None) -> Trainer:
    """Everything a run needs, in an order that makes it reproducible: seed, then data, then the
    model (its initial weights are the first draws), then a resumed run's saved state.

    `data` skips preparing the corpus (tests share one). Under torchrun this joins the process
    group, and rank 0 prepares the corpus before the others read its cache.
    """
    set_threads(cfg.train.num_threads)
    reset_peak_rss()  # this run's peak, also in a process that ran another before
    dist = init_distributed()  # a single process unless run by torchrun
    device = dist.device(select_device(cfg.device.value))
    make_deterministic(device)
    seed_everything(cfg.seed)
    resume, train_digest = None, None
    if found := load_resume_payload(cfg):  # before any data work: a mismatch fails at once
        resume, path = found
        check_not_done(TrainState(**resume["state"]), cfg.train, run_dir=path.parent.parent)
        train_digest = (resume.get("training_data") or {}).get("train_digest")
    data = data if data is not None else prepare_data_on_all_ranks(cfg, dist, train_digest)
    model = build_model(cfg.model, cfg.attention, data.tokenizer.src_vocab_size,
                        data.tokenizer.tgt_vocab_size, data.output_ids).to(device)
    if dist.enabled:
        # one dropout stream per rank (the weights are the same: DDP copies rank 0's)
        seed_everything(cfg.seed + dist.rank)
    # every rank builds the same batch list from (seed, epoch) and takes its own share of it
    sampler = training_sampler(data.train, cfg, dist)
    optimizer = build_optimizer(model, cfg.train)
    budget = BudgetShare()
    scheduler = build_scheduler(optimizer, cfg.train, budget)
    autocast_dtype = training_autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    state = TrainState()
    if resume is not None:  # every rank loads the same weights and counters, its own RNG states
        state = TrainState(**restore_training(resume, model, optimizer, scheduler, scaler,
                                              dist.rank, dist.world_size))
    # a resumed run drops what was logged after its checkpoint (steps past state.step), and
    # keeps the evaluation logged at that step just before the checkpoint was written
    board = Board(run_dir, purge_step=state.step + 1 if resume is not None else None) \
        if dist.is_main else None
    log_run_start(cfg, run_dir, model, device, autocast_dtype, len(sampler))
    return Trainer(cfg, Path(run_dir), data, model, optimizer, scheduler, budget, scaler, sampler,
                   state, dist, device, autocast_dtype, board)


def prepare_data_on_all_ranks(cfg: Config, dist: Distributed,
                              train_digest: str | None = None) -> PreparedData:
    """prepare_data for every rank of a torchrun job: rank 0 fetches the corpus and trains the
    tokenizer first; the others then read its cache (or, on a node that does not share
    data.root, prepare their own copy, which must come out the same). `train_digest`: a resumed
    run's, which the training pairs must have."""
    if not dist.is_main:
        dist.barrier()
    data = prepare_data(cfg.data, cfg.train.batch_tokens, train_digest)
    if dist.is_main:
        dist.barrier()
    models = data.tokenizer.to_bytes()
    digest = hashlib.sha256(models["src"] + models["tgt"]).hexdigest()
    if len(set(dist.gather(digest))) > 1:
        raise TrainingError(
            "the ranks prepared different sentencepiece models; put data.root on a file "
            "system that every node shares, or prepare the data once and copy it to each node")
    return data


def log_run_start(cfg: Config, run_dir: Path, model: Seq2Seq, device: torch.device,
                  autocast_dtype: torch.dtype | None, batches_per_epoch: int) -> None:
    """What the run is: where it writes, its size, its device; and a warning when a model sized
    for a GPU is about to train on a CPU."""
    counts = model.parameter_counts()
    log.info("run dir %s", Path(run_dir).resolve())
    log.info("model parameters: %s", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    log.info("device %s (%s), %d training batches per epoch", device,
             precision_name(autocast_dtype), batches_per_epoch)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    log.info("machine: %s", this_machine(gpu).line())  # what tokens/s below depend on
    if device.type == "cpu" and cfg.model.hidden_size > CPU_HIDDEN_SIZE:
        log.warning("training the %s-parameter model (hidden size %d, sized for a GPU) on "
                    "the CPU: slow (after %d steps the log says how slow); experiment=cpu40 "
                    "is the CPU recipe (256/256, 40 minutes, test BLEU ~42 on Multi30k)",
                    f"{counts['total']:,}", cfg.model.hidden_size, ETA_STEP)
