"""The training loop: optimizer, schedule, clipping, AMP, evaluation, checkpoints, early stopping.

`Trainer.fit` reads top to bottom: for each epoch, for each batch, one teacher-forced step; every
`train.eval_every` steps (or at the end of each epoch) a validation pass that decides the schedule,
the best checkpoint and early stopping. All counters that decide what happens next live in
`TrainState`, which every checkpoint carries, so a resumed run continues exactly where the saved
one stopped: same batch order, same RNG draws, same schedule.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import math
import platform
import resource
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sacrebleu
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from seq2seq.batching import Batch, TokenBudgetSampler, collate
from seq2seq.checkpoint import (
    load_checkpoint,
    resolve_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from seq2seq.config import Config, DeviceName, OptimizerName, Schedule, TrainConfig, to_plain
from seq2seq.data import EvalSplit, PreparedData, prepare_data
from seq2seq.distributed import Distributed, batch_trace_path, init_distributed
from seq2seq.errors import CheckpointError, TrainingError
from seq2seq.evaluation import SearchSettings, translate_and_score
from seq2seq.loss import SequenceLoss, sequence_loss
from seq2seq.model import Seq2Seq, build_model
from seq2seq.visualize import attention_figures

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving last.pt."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; state saved to "
                         f"{checkpoint}; continue with train.resume={checkpoint.parent.parent}")
        self.signum = signum


@dataclass
class TrainState:
    """Everything beyond model/optimizer state that decides what the loop does next."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch_in_epoch: int = 0  # batches of that epoch already trained
    step: int = 0  # optimizer steps taken (skipped non-finite steps do not count)
    best_bleu: float = -1.0
    best_chrf: float = 0.0
    best_step: int = 0
    bad_evals: int = 0  # evaluations since the best one (early stopping)
    nan_streak: int = 0  # consecutive non-finite losses
    last_eval_step: int = -1
    train_seconds: float = 0.0  # time spent in training steps, evaluation excluded
    train_tokens: int = 0  # target tokens trained on
    finished: bool = False


def select_device(name: DeviceName) -> torch.device:
    """`auto` takes cuda, then mps, then cpu."""
    if name is DeviceName.auto:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name is DeviceName.cuda and not torch.cuda.is_available():
        raise TrainingError("device=cuda but no CUDA device is available (use device=auto)")
    if name is DeviceName.mps and not torch.backends.mps.is_available():
        raise TrainingError("device=mps but MPS is not available (use device=auto)")
    return torch.device(name.value)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    optimizer_class = {OptimizerName.adam: torch.optim.Adam,
                       OptimizerName.adamw: torch.optim.AdamW}[cfg.optimizer]
    return optimizer_class(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                           weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Step-based schedules are LambdaLR (stepped every update); plateau is stepped on val BLEU."""
    warmup = max(cfg.warmup_steps, 1)
    floor = cfg.min_lr / cfg.lr

    def inverse_sqrt(step: int) -> float:  # Vaswani et al. 2017, eq. 3, without the d_model term
        step = max(step, 1)
        return max(floor, min(step / warmup, math.sqrt(warmup / step)))

    def cosine(step: int) -> float:  # linear warmup, then cosine decay to min_lr
        if step < cfg.warmup_steps:
            return max(step, 1) / warmup
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    if cfg.schedule is Schedule.plateau:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.min_lr)
    schedules = {Schedule.constant: lambda step: 1.0, Schedule.inverse_sqrt: inverse_sqrt,
                 Schedule.cosine: cosine}
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedules[cfg.schedule])


def all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _find_malloc_trim()  # looked up once: the trainer may call it every step


def release_free_memory() -> None:
    """Hand memory that glibc's malloc keeps on its free lists back to the OS (malloc_trim).

    A CPU step allocates and frees hundreds of MB of tensors of changing sizes; without a trim
    the heap's free holes add up over a long run and the resident size creeps upwards. A no-op
    where the C library is not glibc.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def flat_scalars(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A flat dict of scalars for add_hparams (None and lists become strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_scalars(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class Trainer:
    """Trains one model in one process; under torchrun, one of several DDP ranks (see README)."""

    def __init__(self, cfg: Config, run_dir: Path, data: PreparedData | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        self.dist: Distributed = init_distributed()  # a single process unless run by torchrun
        self.device = self.dist.device(select_device(cfg.device))
        if self.device.type == "cpu":
            # same seed and config give the same result on the CPU
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(cfg.seed)

        resume_payload = self._load_resume_payload()
        self.data = data if data is not None else self._prepare_data()
        self.tokenizer = self.data.tokenizer
        self.model: Seq2Seq = build_model(cfg.model, cfg.attention, self.tokenizer.src_vocab_size,
                                          self.tokenizer.tgt_vocab_size).to(self.device)
        if self.dist.enabled:
            # one dropout stream per rank (the weights are the same: DDP copies rank 0's)
            seed_everything(cfg.seed + self.dist.rank)
        # every rank builds the same batch list from (seed, epoch) and takes its own share of it
        self.sampler = TokenBudgetSampler(self.data.train.src_lengths, self.data.train.tgt_lengths,
                                          cfg.train.batch_tokens, shuffle=True, seed=cfg.seed,
                                          rank=self.dist.rank, world_size=self.dist.world_size)
        total_steps = cfg.train.max_steps or cfg.train.max_epochs * len(self.sampler)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, total_steps)
        self.autocast_dtype = self._autocast_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)
        self.state = TrainState()
        if resume_payload is not None:
            self._restore(resume_payload)
        # what trains: the model itself, or its DDP wrapper that all-reduces gradients in backward
        self.loss = SequenceLoss(self.model)
        self.train_model: torch.nn.Module = self.loss
        if self.dist.enabled:
            self.train_model = DistributedDataParallel(
                self.loss, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.writer = (SummaryWriter(self.run_dir / "tb", purge_step=self.state.step or None)
                       if self.dist.is_main else None)
        self.batch_trace = batch_trace_path(self.dist)
        self.stop_signal: int | None = None
        self.plot_indices = list(range(min(cfg.train.num_plot_sentences, len(self.data.valid.src))))

    # ---- setup helpers ---------------------------------------------------------------------

    def _autocast_dtype(self) -> torch.dtype | None:
        """bf16 where the GPU has it, else fp16 with loss scaling; full precision on the CPU."""
        if not self.cfg.train.amp or self.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _prepare_data(self) -> PreparedData:
        """Rank 0 fetches the corpus and trains the tokenizer first; the others then read its
        cache (or, on a node that does not share data.root, prepare their own copy)."""
        cfg = self.cfg
        if not self.dist.is_main:
            self.dist.barrier()
        data = prepare_data(cfg.data, cfg.train.batch_tokens)
        if self.dist.is_main:
            self.dist.barrier()
        models = data.tokenizer.to_bytes()
        digest = hashlib.sha256(models["src"] + models["tgt"]).hexdigest()
        if len(set(self.dist.gather(digest))) > 1:
            raise TrainingError(
                "the ranks prepared different sentencepiece models; put data.root on a file "
                "system that every node shares, or prepare the data once and copy it to each node")
        return data

    def _load_resume_payload(self) -> dict[str, Any] | None:
        if not self.cfg.train.resume:
            return None
        path = resolve_checkpoint(self.cfg.train.resume, "last.pt")
        payload = load_checkpoint(path)
        saved, current = payload["config"], to_plain(self.cfg)
        # The model and data must be the ones the checkpoint was trained with; train.* may change
        # (e.g. a longer time budget), which is the point of resuming.
        mismatches = [
            f"{section}.{key} is {current[section][key]!r} here but {value!r} in the checkpoint"
            for section in ("data", "model", "attention")
            for key, value in saved[section].items()
            if key not in ("source", "root") and current[section].get(key) != value
        ]
        if saved["seed"] != current["seed"]:
            mismatches.append(
                f"seed is {current['seed']} here but {saved['seed']} in the checkpoint")
        if mismatches:
            raise CheckpointError(
                f"cannot resume from {path}: " + "; ".join(mismatches)
                + ". Pass the original run's overrides (its .hydra/overrides.yaml) as well.")
        log.info("resuming from %s (step %d)", path, payload["state"]["step"])
        return payload

    def _restore(self, payload: dict[str, Any]) -> None:
        """Every rank loads the same model, optimizer and counters, and its own RNG states."""
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.state = TrainState(**payload["state"])
        self.state.finished = False
        saved_world_size = payload.get("world_size", 1)
        if saved_world_size == self.dist.world_size:
            restore_rng_states(payload.get("rng_per_rank", [payload["rng"]])[self.dist.rank])
            return
        # Another number of processes: the same global batch list, cut differently. Skip every
        # batch already trained (a few untrained ones of this epoch may be skipped as well).
        trained = self.state.batch_in_epoch * saved_world_size
        self.state.batch_in_epoch = math.ceil(trained / self.dist.world_size)
        if self.dist.is_main:
            restore_rng_states(payload["rng"])
        log.warning("resuming a run of %d process(es) with %d: the epoch continues after global "
                    "batch %d, and dropout draws differ from an uninterrupted run",
                    saved_world_size, self.dist.world_size, trained)

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train until a stop condition, then test the best checkpoint; returns results.json."""
        state = self.state
        counts = self.model.parameter_counts()
        log.info("model parameters: %s", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        log.info("device %s, %d training batches per epoch", self.device, len(self.sampler))
        previous_handlers = self._install_signal_handlers()
        try:
            stop_reason = self._train_loop()
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        self._agree_on_stopping(None)  # a signal that came during the last step or evaluation
        if self.stop_signal is not None:
            self._save("last.pt")
            raise Interrupted(self.stop_signal, self.checkpoint_dir / "last.pt")
        if state.last_eval_step != state.step:  # the budget ended between two evaluations
            self._evaluate()
        state.finished = True
        self._save("last.pt")
        log.info("training stopped: %s; best val BLEU %.2f at step %d", stop_reason,
                 state.best_bleu, state.best_step)
        # rank 0 tests and writes results.json while the others wait for its results here
        results = self._test_and_report(stop_reason) if self.dist.is_main else None
        if self.writer is not None:
            self.writer.close()
        return self.dist.broadcast(results)

    def _train_loop(self) -> str:
        cfg, state = self.cfg.train, self.state
        deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60
        while state.epoch < cfg.max_epochs:
            self.sampler.set_epoch(state.epoch)
            # the epoch's batch order depends only on (seed, epoch): a resumed run skips the
            # batches it already trained and sees the rest in the same order
            batches = list(self.sampler)[state.batch_in_epoch:]
            progress = tqdm(batches, desc=f"epoch {state.epoch + 1}", unit="batch", leave=False,
                            dynamic_ncols=True, disable=None if self.dist.is_main else True)
            for indices in progress:
                started = time.perf_counter()
                if self.batch_trace is not None:
                    self._trace_batch(self.batch_trace, indices)
                batch = collate([self.data.train[i] for i in indices]).to(self.device)
                loss_per_token = self._train_step(batch)
                if cfg.release_memory_every and state.step % cfg.release_memory_every == 0:
                    release_free_memory()  # else freed holes pile up as resident memory
                state.train_seconds += time.perf_counter() - started
                state.batch_in_epoch += 1
                if loss_per_token is not None:
                    progress.set_postfix(loss=f"{loss_per_token:.3f}",
                                         tok_s=f"{state.train_tokens / state.train_seconds:,.0f}")
                if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step > 0 \
                        and state.last_eval_step != state.step:
                    if self._evaluate():
                        return "early stopping"
                out_of_time = self._agree_on_stopping(deadline)
                if self.stop_signal is not None:
                    return "signal"
                if cfg.max_steps is not None and state.step >= cfg.max_steps:
                    return "max_steps"
                if out_of_time:
                    return "max_minutes"
            progress.close()
            state.epoch += 1
            state.batch_in_epoch = 0
            if not cfg.eval_every and self._evaluate():
                return "early stopping"
        return "max_epochs"

    def _agree_on_stopping(self, deadline: float | None) -> bool:
        """Share a pending stop signal and whether the time budget is spent among all ranks.

        Ranks receive a signal, or cross the deadline, at slightly different steps; a rank that
        stopped alone would leave the others waiting for it in the next all-reduce. Returns
        whether the time is up; a signal seen by any rank becomes `self.stop_signal` everywhere.
        """
        out_of_time = deadline is not None and self.state.train_seconds >= deadline
        signum, out_of_time = self.dist.max_over_ranks([self.stop_signal or 0, int(out_of_time)])
        if signum:
            self.stop_signal = signum
        return bool(out_of_time)

    def _trace_batch(self, path: Path, indices: list[int]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as trace:
            trace.write(json.dumps({"epoch": self.state.epoch, "indices": indices}) + "\n")

    def _train_step(self, batch: Batch) -> float | None:
        """One teacher-forced update; returns the loss per token, or None if it was skipped."""
        cfg, state = self.cfg.train, self.state
        self.train_model.train()
        # normalise by the target tokens of all ranks' batches together, so that the update is
        # the one a single process would make on their union, whatever each rank's share
        num_tokens = self.dist.sum_over_ranks(batch.num_tgt_tokens)
        loss = sequence_loss(self.train_model, batch, cfg.label_smoothing,
                             self.autocast_dtype) / num_tokens
        if self.dist.enabled:
            loss = loss * self.dist.world_size  # DDP averages gradients over the ranks
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        # clipping bounds the update when an odd batch gives a huge gradient (Pascanu et al. 2013)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        # one host sync per step: skipping a non-finite step needs the answer on the host. The
        # mean over ranks is the loss per token of the union, and it makes every rank skip alike.
        stats = self.dist.mean_over_ranks(torch.stack([loss.detach().float(), grad_norm.float()]))
        loss_value, norm_value = (float(v) for v in stats.cpu())
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)) \
                and self.autocast_dtype != torch.float16:
            return self._skip_non_finite(loss_value)
        self.scaler.step(self.optimizer)  # with fp16 the scaler itself skips inf/NaN gradients
        self.scaler.update()
        state.nan_streak = 0
        state.step += 1
        state.train_tokens += num_tokens
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        if state.step % cfg.log_every == 0 and self.dist.is_main:
            self._log_train_scalars(loss_value, norm_value)
        return loss_value

    def _skip_non_finite(self, loss_value: float) -> None:
        state = self.state
        state.nan_streak += 1
        self.optimizer.zero_grad(set_to_none=True)
        log.warning("non-finite loss or gradient (loss %s) at step %d: step skipped (%d in a row)",
                    loss_value, state.step, state.nan_streak)
        if state.nan_streak >= self.cfg.train.max_nan_steps:
            raise TrainingError(
                f"{state.nan_streak} consecutive non-finite losses at step {state.step}: training "
                f"diverged. Lower train.lr (now {self.cfg.train.lr}) or train.clip_norm, or resume "
                f"from the last good checkpoint in {self.checkpoint_dir}")
        return None

    def _log_train_scalars(self, loss: float, grad_norm: float) -> None:
        state, step = self.state, self.state.step
        tokens_per_s = state.train_tokens / max(state.train_seconds, 1e-9)
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/perplexity", math.exp(min(loss, 50.0)), step)
        self.writer.add_scalar("train/learning_rate", self.optimizer.param_groups[0]["lr"], step)
        self.writer.add_scalar("train/grad_norm", grad_norm, step)
        self.writer.add_scalar("train/tokens_per_s", tokens_per_s, step)
        if not tqdm_enabled():
            log.info("step %d epoch %d loss %.3f lr %.2e %.0f tok/s", step, state.epoch + 1, loss,
                     self.optimizer.param_groups[0]["lr"], tokens_per_s)

    # ---- evaluation, checkpoints, results ------------------------------------------------------

    def _search_settings(self, beam_size: int) -> SearchSettings:
        cfg = self.cfg.train
        return SearchSettings(beam_size=beam_size, length_penalty=cfg.length_penalty,
                              max_len_ratio=cfg.max_len_ratio, max_len_offset=cfg.max_len_offset,
                              max_src_len=self.cfg.data.max_len)

    @torch.inference_mode()
    def _validation_loss(self, split: EvalSplit) -> float:
        """Teacher-forced loss per target token (no label smoothing: a true perplexity)."""
        self.model.eval()
        total, tokens = 0.0, 0
        sampler = TokenBudgetSampler([len(s) for s in split.src_ids],
                                     [len(t) for t in split.tgt_ids],
                                     self.cfg.train.batch_tokens, shuffle=False)
        for indices in sampler:
            batch = collate([(i, split.src_ids[i], split.tgt_ids[i]) for i in indices])
            batch = batch.to(self.device)
            total += float(sequence_loss(self.loss, batch, 0.0, self.autocast_dtype))
            tokens += batch.num_tgt_tokens
        return total / max(tokens, 1)

    def _epochs_done(self) -> float:
        return self.state.epoch + self.state.batch_in_epoch / max(len(self.sampler), 1)

    def _evaluate(self) -> bool:
        """Validate, step the plateau schedule, save best/last; True when early stopping fires.

        Under torchrun rank 0 validates while the others wait for its scores; then every rank
        takes the same decisions (schedule, best, early stopping) from the same numbers.
        """
        state, cfg = self.state, self.cfg.train
        started = time.perf_counter()
        val_loss, bleu, chrf = self.dist.broadcast(self._validate() if self.dist.is_main
                                                   else None)
        state.last_eval_step = state.step
        step = state.step
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(bleu)
        improved = bleu > state.best_bleu
        if improved:
            state.best_bleu, state.best_chrf, state.best_step = bleu, chrf, step
            state.bad_evals = 0
        else:
            state.bad_evals += 1
        stop = cfg.patience > 0 and state.bad_evals >= cfg.patience
        log.info("eval step %d (%.2f epochs): val loss %.3f ppl %.2f BLEU %.2f chrF %.2f%s "
                 "(%.1fs, peak RSS %.0f MB)",
                 step, self._epochs_done(), val_loss, math.exp(min(val_loss, 50.0)), bleu, chrf,
                 " *best*" if improved else f" ({state.bad_evals} without gain)",
                 time.perf_counter() - started, peak_rss_mb())
        if improved:
            self._save("best.pt")
        self._save("last.pt")
        release_free_memory()  # what validation and saving freed
        if self.writer is not None:
            self.writer.flush()
        return stop

    def _validate(self) -> tuple[float, float, float]:
        """Val loss, BLEU and chrF, written to TensorBoard with the attention plots."""
        valid, step = self.data.valid, self.state.step
        val_loss = self._validation_loss(valid)
        scores, hypotheses, found = translate_and_score(
            self.model, self.tokenizer, valid.src_ids, valid.ref,
            self._search_settings(self.cfg.train.valid_beam_size), self.device)
        self.writer.add_scalar("val/loss", val_loss, step)
        self.writer.add_scalar("val/perplexity", math.exp(min(val_loss, 50.0)), step)
        self.writer.add_scalar("val/bleu", scores.bleu, step)
        self.writer.add_scalar("val/chrf", scores.chrf, step)
        self._plot_attention(found, hypotheses, step)
        return val_loss, scores.bleu, scores.chrf

    def _plot_attention(self, found, hypotheses: list[str], step: int) -> None:
        valid = self.data.valid
        for number, index in enumerate(self.plot_indices):
            hyp = found[index]
            src_tokens = self.tokenizer.src_pieces(valid.src_ids[index])
            src_tokens = (src_tokens[: self.cfg.data.max_len] + ["</s>"])
            tgt_tokens = self.tokenizer.tgt_pieces(hyp.tokens) + ["</s>"]
            tgt_tokens = tgt_tokens[: hyp.attention.shape[1]]
            weights = hyp.attention[:, : len(tgt_tokens), : len(src_tokens)]
            figures = attention_figures(weights, src_tokens, tgt_tokens, f"val {index} step {step}")
            for head, figure in enumerate(figures):
                tag = f"attention/sentence_{number}" + (f"/head_{head + 1}" if len(figures) > 1
                                                        else "")
                self.writer.add_figure(tag, figure, step, close=True)
            self.writer.add_text(f"translation/sentence_{number}",
                                 f"src: {valid.src[index]}  \nhyp: {hypotheses[index]}  \n"
                                 f"ref: {valid.ref[index]}", step)

    def _save(self, name: str) -> None:
        """Checkpoint everything needed to translate or to resume exactly; never a NaN model.

        Every rank calls it (their RNG states are gathered); only rank 0 writes the file, and the
        others wait until it is on disk.
        """
        if not all_finite(self.model):
            raise TrainingError(f"the model has non-finite weights at step {self.state.step}; "
                                f"{name} was not overwritten")
        rng_per_rank = self.dist.gather(rng_states())
        if self.dist.is_main:
            self._write_checkpoint(name, rng_per_rank)
        self.dist.barrier()

    def _write_checkpoint(self, name: str, rng_per_rank: list[dict[str, Any]]) -> None:
        payload = {
            "model": self.model.state_dict(),
            "config": to_plain(self.cfg),
            "tokenizer": self.tokenizer.to_bytes(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": asdict(self.state),
            "rng": rng_per_rank[0],
        }
        if self.dist.enabled:
            payload["world_size"] = self.dist.world_size
            payload["rng_per_rank"] = rng_per_rank
        save_checkpoint(payload, self.checkpoint_dir / name)

    def _test_and_report(self, stop_reason: str) -> dict[str, Any]:
        best = self.checkpoint_dir / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best)["model"])
        test = self.data.test
        started = time.perf_counter()
        scores, hypotheses, _ = translate_and_score(
            self.model, self.tokenizer, test.src_ids, test.ref,
            self._search_settings(self.cfg.train.beam_size), self.device)
        (self.run_dir / f"{test.name}.hyp.txt").write_text("\n".join(hypotheses) + "\n",
                                                             encoding="utf-8")
        log.info("test %s (beam %d): BLEU %.2f chrF %.2f (lowercased BLEU %.2f) in %.1fs",
                 test.name, self.cfg.train.beam_size, scores.bleu, scores.chrf,
                 scores.bleu_lowercase, time.perf_counter() - started)
        log.info("BLEU signature: %s", scores.signatures["bleu"])
        state = self.state
        results = {
            "config": to_plain(self.cfg),
            "parameters": self.model.parameter_counts(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "sacrebleu": sacrebleu.__version__},
            "device": str(self.device),
            "world_size": self.dist.world_size,  # processes; tokens_per_s counts them all
            "seed": self.cfg.seed,
            "stop_reason": stop_reason,
            "epochs": self._epochs_done(),
            "steps": state.step,
            "train_seconds": state.train_seconds,
            "tokens_per_s": state.train_tokens / max(state.train_seconds, 1e-9),
            "peak_rss_mb": peak_rss_mb(),
            "best_step": state.best_step,
            "valid": {"split": self.data.valid.name, "bleu": state.best_bleu,
                      "chrf": state.best_chrf, "beam_size": self.cfg.train.valid_beam_size},
            "test": {"split": test.name, "beam_size": self.cfg.train.beam_size,
                     **scores.as_dict()},
            "data": self.data.stats(),
        }
        (self.run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n",
                                                   encoding="utf-8")
        self.writer.add_hparams(
            flat_scalars(to_plain(self.cfg)),
            {"hparam/test_bleu": scores.bleu, "hparam/test_chrf": scores.chrf,
             "hparam/best_val_bleu": state.best_bleu},
            run_name=".")
        return results

    def _install_signal_handlers(self) -> dict[int, Any]:
        """Ctrl-C / SIGTERM finish the current step, save last.pt and stop; a second one aborts."""

        def request_stop(signum: int, frame: Any) -> None:
            if self.stop_signal is not None:
                if self.dist.enabled:  # torchrun passes on the Ctrl-C its workers already had
                    return
                raise KeyboardInterrupt
            self.stop_signal = signum
            log.warning("%s received: saving last.pt after this step%s",
                        signal.Signals(signum).name,
                        "" if self.dist.enabled else " (again to abort)")

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
        return previous


def tqdm_enabled() -> bool:
    import sys

    return sys.stderr.isatty()
