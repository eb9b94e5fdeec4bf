"""The training loop: `build_trainer(cfg, run_dir)` assembles a run, `Trainer.fit` runs it.

`Trainer.fit` reads top to bottom: for each epoch, for each batch, one teacher-forced step
(`train_step`); every `train.eval_every` steps (or at the end of each epoch) a validation pass that
decides the schedule, the best checkpoint and early stopping. All counters that decide what
happens next live in `TrainState`, which every checkpoint carries, so a resumed run continues
exactly where the saved one stopped: same batch order, same RNG draws, same schedule.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from seq2seq.averaging import average_payloads
from seq2seq.batching import Batch, PairDataset, TokenBudgetSampler, collate
from seq2seq.checkpoint import (
    load_checkpoint,
    load_resume_payload,
    restore_training,
    rng_states,
    save_checkpoint,
    training_payload,
)
from seq2seq.config import Config, to_plain
from seq2seq.data import EvalSplit, PreparedData, prepare_data_on_all_ranks, sampled_train
from seq2seq.distributed import Distributed, batch_trace_path, init_distributed, trace_batch
from seq2seq.errors import TrainingError
from seq2seq.evaluation import Scores, score, search_settings
from seq2seq.files import atomic_write_text
from seq2seq.loss import SequenceLoss, mean_token_loss, sequence_loss
from seq2seq.model import Seq2Seq, build_model
from seq2seq.optim import BudgetShare, build_optimizer, build_scheduler, is_plateau
from seq2seq.report import format_duration, read_overrides
from seq2seq.results import log_hparams, run_results, write_results
from seq2seq.runtime import (
    StopRequest,
    make_deterministic,
    peak_rss_mb,
    release_free_memory,
    seed_everything,
    select_device,
    set_threads,
)
from seq2seq.train_state import (
    Interrupted,
    TrainState,
    budget_share,
    check_not_done,
    kept_for_averaging,
    seconds_left,
    spent_budget,
)
from seq2seq.translator import Translator
from seq2seq.visualize import log_translation

log = logging.getLogger(__name__)

CPU_HIDDEN_SIZE = 256  # larger models are sized for a GPU: training one on a CPU gets a warning
ETA_STEP = 5  # the step after which the log says how long an epoch and the run will take


def build_trainer(cfg: Config, run_dir: Path, data: PreparedData | None = None) -> Trainer:
    """Everything a run needs, in an order that makes it reproducible: seed, then data, then the
    model (its initial weights are the first draws), then a resumed run's saved state.

    `data` skips preparing the corpus (tests share one). Under torchrun this joins the process
    group, and rank 0 prepares the corpus before the others read its cache.
    """
    set_threads(cfg.train.num_threads)
    dist = init_distributed()  # a single process unless run by torchrun
    device = dist.device(select_device(cfg.device.value))
    make_deterministic(device)
    seed_everything(cfg.seed)
    resume = None
    if found := load_resume_payload(cfg):  # before any data work: a mismatch fails at once
        resume, path = found
        check_not_done(TrainState(**resume["state"]), cfg.train, run_dir=path.parent.parent)
    data = data if data is not None else prepare_data_on_all_ranks(cfg, dist)
    model = build_model(cfg.model, cfg.attention, data.tokenizer.src_vocab_size,
                        data.tokenizer.tgt_vocab_size).to(device)
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
    writer = SummaryWriter(Path(run_dir) / "tb",
                           purge_step=state.step + 1 if resume is not None else None) \
        if dist.is_main else None
    return Trainer(cfg, Path(run_dir), data, model, optimizer, scheduler, budget, scaler, sampler,
                   state, dist, device, autocast_dtype, writer)


def training_sampler(train: PairDataset, cfg: Config, dist: Distributed) -> TokenBudgetSampler:
    """Token-budget batches of `train`, the same list on every rank, each taking its share."""
    return TokenBudgetSampler(train.src_lengths, train.tgt_lengths, cfg.train.batch_tokens,
                              shuffle=True, seed=cfg.seed, rank=dist.rank,
                              world_size=dist.world_size)


def training_autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 with loss scaling. Full precision on the CPU: bf16
    autocast there, even with AMX, costs 1.4-2.5 times the memory for at most 24% more tokens/s,
    and nothing with the recipe's per-step memory release (README, Results)."""
    if not cfg.train.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(autocast_dtype: torch.dtype | None) -> str:
    """How training computes, for the log and results.json: fp32, or bf16/fp16 autocast."""
    if autocast_dtype is None:
        return "fp32"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype] + " autocast"


@dataclass
class _Averaged:
    """The average of the kept evaluations' weights, scored: see Trainer._test_average."""

    steps: list[int]
    valid: Scores
    test: Scores
    hypotheses: list[str]  # its test translations
    final: bool  # its val BLEU beats best.pt's: it is the run's final model


class Trainer:
    """Trains one model in one process; under torchrun, one of several DDP ranks (see README)."""

    def __init__(self, cfg: Config, run_dir: Path, data: PreparedData, model: Seq2Seq,
                 optimizer: torch.optim.Optimizer, scheduler, budget: BudgetShare,
                 scaler: torch.amp.GradScaler, sampler: TokenBudgetSampler, state: TrainState,
                 dist: Distributed, device: torch.device, autocast_dtype: torch.dtype | None,
                 writer: SummaryWriter | None) -> None:
        self.cfg, self.run_dir, self.data, self.model = cfg, run_dir, data, model
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.budget = budget  # the share spent, which the decaying schedules follow
        self.sampler, self.state, self.dist, self.device = sampler, state, dist, device
        self.autocast_dtype, self.writer = autocast_dtype, writer
        self.tokenizer = data.tokenizer
        self.train = data.train  # with subword sampling, each epoch's own segmentation
        self.checkpoint_dir = run_dir / "checkpoints"
        # what trains: the loss module, or its DDP wrapper that all-reduces gradients in backward
        self.loss = SequenceLoss(model)
        self.train_model: torch.nn.Module = self.loss
        if dist.enabled:
            self.train_model = DistributedDataParallel(
                self.loss, device_ids=[device.index] if device.type == "cuda" else None)
        self.translator = Translator(model, data.tokenizer, cfg, device)  # val and test
        self.batch_trace = batch_trace_path(dist)

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train until a stop condition, then test the best checkpoint; returns results.json."""
        state = self.state
        counts = self.model.parameter_counts()
        log.info("run dir %s", self.run_dir.resolve())
        log.info("model parameters: %s", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        log.info("device %s (%s), %d training batches per epoch", self.device,
                 precision_name(self.autocast_dtype), len(self.sampler))
        if self.device.type == "cpu" and self.cfg.model.hidden_size > CPU_HIDDEN_SIZE:
            log.warning("training the %s-parameter model (hidden size %d, sized for a GPU) on "
                        "the CPU: slow (after %d steps the log says how slow); experiment=cpu40 "
                        "is the CPU recipe (256/256, 40 minutes, test BLEU ~42 on Multi30k)",
                        f"{counts['total']:,}", self.cfg.model.hidden_size, ETA_STEP)
        # Ctrl-C / SIGTERM finish the current step, save last.pt and stop; a second one aborts
        # (under torchrun, which passes on to its workers the Ctrl-C they already had, it does not)
        with StopRequest(abort_on_second=not self.dist.enabled) as self.stop_request:
            if state.finished and spent_budget(state, self.cfg.train):
                log.info("training had finished (%s); the test is left", state.stop_reason)
            else:
                self._train()
            # training is saved: from here a signal ends the run at once, and train.resume=RUN
            # runs the test again
            self.stop_request.interrupt = self._interrupted
            self._agree_on_stopping(None)  # a signal during the last evaluation or save
            if self.stop_request.signum is not None:
                raise self._interrupted(self.stop_request.signum)
            # rank 0 tests and writes results.json while the others wait for its results here
            results = self.dist.broadcast(self._test_and_report(state.stop_reason)
                                          if self.dist.is_main else None)
        if self.writer is not None:
            self.writer.close()
        return results

    def _train(self) -> None:
        """Train until a stop condition; then last.pt holds the finished state."""
        state = self.state
        state.finished = False
        state.stop_reason = self._train_loop()
        self._agree_on_stopping(None)  # a signal that came during the last step or evaluation
        if self.stop_request.signum is not None:
            self._save("last.pt")
            raise self._interrupted(self.stop_request.signum)
        if state.last_eval_step != state.step:  # the budget ended between two evaluations
            self._evaluate()
        state.finished = True
        self._save("last.pt")
        log.info("training stopped: %s; best val BLEU %.2f at step %d", state.stop_reason,
                 state.best_bleu, state.best_step)

    def _interrupted(self, signum: int) -> Interrupted:
        return Interrupted(signum, self.checkpoint_dir / "last.pt")

    def _train_loop(self) -> str:
        cfg, state = self.cfg.train, self.state
        deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60
        while state.epoch < cfg.max_epochs:
            if self.cfg.data.tokenizer.sampling.enabled:
                self._resample(state.epoch)
            self.sampler.set_epoch(state.epoch)
            # the epoch's batch order depends only on (seed, epoch): a resumed run skips the
            # batches it already trained and sees the rest in the same order
            batches = list(self.sampler)[state.batch_in_epoch:]
            # the bar of a resumed epoch starts where the epoch stopped, not at 0
            progress = tqdm(batches, desc=f"epoch {state.epoch + 1}/{cfg.max_epochs}",
                            unit="batch", leave=False, dynamic_ncols=True,
                            initial=state.batch_in_epoch, total=len(self.sampler),
                            disable=None if self.dist.is_main else True)
            for indices in progress:
                if cfg.max_steps is not None and state.step >= cfg.max_steps:
                    return "max_steps"  # resumed at its last step: not one step more
                started = time.perf_counter()
                if self.batch_trace is not None:
                    trace_batch(self.batch_trace, state.epoch, indices)
                batch = collate([self.train[i] for i in indices]).to(self.device)
                loss_per_token = self.train_step(batch)
                if cfg.release_memory_every and state.step % cfg.release_memory_every == 0:
                    release_free_memory()  # else freed holes pile up as resident memory
                state.train_seconds += time.perf_counter() - started
                state.batch_in_epoch += 1
                if loss_per_token is not None:
                    left = format_duration(seconds_left(state, cfg, len(self.sampler)))
                    progress.set_postfix(loss=f"{loss_per_token:.3f}",
                                         tok_s=f"{state.train_tokens / state.train_seconds:,.0f}",
                                         run_left=left)
                if state.step == ETA_STEP:
                    per_epoch = state.train_seconds / state.step * len(self.sampler)
                    log.info("at this speed: %s per epoch, at most %s of training left "
                             "(early stopping may end it sooner)", format_duration(per_epoch),
                             format_duration(seconds_left(state, cfg, len(self.sampler))))
                if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step > 0 \
                        and state.last_eval_step != state.step:
                    if self._evaluate():
                        return "early stopping"
                out_of_time = self._agree_on_stopping(deadline)
                if self.stop_request.signum is not None:
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

    def _resample(self, epoch: int) -> None:
        """Subword regularization: this epoch's sampled segmentation of the training pairs (the
        same for the same seed and epoch, so resume stays exact), and batches for its lengths."""
        started = time.perf_counter()
        self.train = sampled_train(self.data, self.cfg.data, self.cfg.seed, epoch)
        self.sampler = training_sampler(self.train, self.cfg, self.dist)
        log.info("epoch %d: sampled the segmentation of %d training pairs in %.1fs",
                 epoch + 1, len(self.train), time.perf_counter() - started)

    def train_step(self, batch: Batch) -> float | None:
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
        # mean over ranks is the loss per token of the union, and it makes every rank skip alike;
        # the ranks' mean training time gives them all the same budget share, hence the same lr.
        stats = self.dist.mean_over_ranks(torch.stack([
            loss.detach().float(), grad_norm.float(),
            torch.tensor(state.train_seconds, device=loss.device)]))
        loss_value, norm_value, train_seconds = (float(v) for v in stats.cpu())
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)) \
                and self.autocast_dtype != torch.float16:
            return self._skip_non_finite(loss_value)
        self.scaler.step(self.optimizer)  # with fp16 the scaler itself skips inf/NaN gradients
        self.scaler.update()
        state.nan_streak = 0
        state.step += 1
        state.train_tokens += num_tokens
        if not is_plateau(self.scheduler):
            self.budget.spent = budget_share(state.step, train_seconds, cfg, len(self.sampler))
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

    def _agree_on_stopping(self, deadline: float | None) -> bool:
        """Share a pending stop signal and whether the time budget is spent among all ranks.

        Ranks receive a signal, or cross the deadline, at slightly different steps; a rank that
        stopped alone would leave the others waiting for it in the next all-reduce. Returns
        whether the time is up; a signal seen by any rank becomes this rank's stop request.
        """
        out_of_time = deadline is not None and self.state.train_seconds >= deadline
        request = self.stop_request
        signum, out_of_time = self.dist.max_over_ranks([request.signum or 0, int(out_of_time)])
        if signum:
            request.signum = signum
        return bool(out_of_time)

    def _log_train_scalars(self, loss: float, grad_norm: float) -> None:
        state, step = self.state, self.state.step
        tokens_per_s = state.train_tokens / max(state.train_seconds, 1e-9)
        lr = self.optimizer.param_groups[0]["lr"]
        for tag, value in (("loss", loss), ("perplexity", math.exp(min(loss, 50.0))),
                           ("learning_rate", lr), ("grad_norm", grad_norm),
                           ("tokens_per_s", tokens_per_s)):
            self.writer.add_scalar(f"train/{tag}", value, step)
        if not sys.stderr.isatty():  # no progress bar: the log shows progress instead
            log.info("step %d epoch %d loss %.3f lr %.2e %.0f tok/s", step, state.epoch + 1, loss,
                     lr, tokens_per_s)

    # ---- evaluation, checkpoints, results ------------------------------------------------------

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
        if is_plateau(self.scheduler):
            self.scheduler.step(bleu)
        improved = bleu > state.best_bleu
        if improved:
            state.best_bleu, state.best_chrf, state.best_step = bleu, chrf, state.step
            state.bad_evals = 0
        else:
            state.bad_evals += 1
        log.info("eval step %d (%.2f epochs): val loss %.3f ppl %.2f BLEU %.2f chrF %.2f%s "
                 "(%.1fs, peak RSS %.0f MB)",
                 state.step, self._epochs_done(), val_loss, math.exp(min(val_loss, 50.0)), bleu,
                 chrf, " *best*" if improved else f" ({state.bad_evals} without gain)",
                 time.perf_counter() - started, peak_rss_mb())
        if cfg.average_checkpoints:
            self._keep_for_averaging(bleu)
        if improved:
            self._save("best.pt")
        self._save("last.pt")
        release_free_memory()  # what validation and saving freed
        if self.writer is not None:
            self.writer.flush()
        return cfg.patience > 0 and state.bad_evals >= cfg.patience

    def _keep_for_averaging(self, bleu: float) -> None:
        """Keep this evaluation's weights (checkpoints/eval-step<N>.pt, a self-contained
        checkpoint) if it is among the train.average_checkpoints last or best, and delete the
        weights of an evaluation that no longer is."""
        state, cfg = self.state, self.cfg.train
        kept = kept_for_averaging(state.kept_evals, [state.step, bleu], cfg.average_checkpoints,
                                  cfg.average_select)
        if self.dist.is_main:
            if [state.step, bleu] in kept:
                save_checkpoint({"model": self.model.state_dict(), "config": to_plain(self.cfg),
                                 "tokenizer": self.tokenizer.to_bytes(),
                                 "state": {"step": state.step, "val_bleu": bleu}},
                                self._eval_checkpoint(state.step))
            for step, _ in state.kept_evals:
                if step not in {kept_step for kept_step, _ in kept}:
                    self._eval_checkpoint(step).unlink(missing_ok=True)
        self.dist.barrier()
        state.kept_evals = kept

    def _eval_checkpoint(self, step: float) -> Path:
        return self.checkpoint_dir / f"eval-step{int(step)}.pt"

    def _validate(self) -> tuple[float, float, float]:
        """Val loss, BLEU and chrF, written to TensorBoard with the attention plots."""
        valid, step = self.data.valid, self.state.step
        val_loss = mean_token_loss(self.loss, valid.src_ids, valid.tgt_ids,
                                   self.cfg.train.batch_tokens, self.device, self.autocast_dtype)
        beam_size = self.cfg.train.valid_beam_size
        _, scores = self._decode(valid, beam_size)
        for tag, value in (("loss", val_loss), ("perplexity", math.exp(min(val_loss, 50.0))),
                           ("bleu", scores.bleu), ("chrf", scores.chrf)):
            self.writer.add_scalar(f"val/{tag}", value, step)
        shown = valid.src[:self.cfg.train.num_plot_sentences]  # again, keeping their attention
        settings = search_settings(self.cfg, beam_size, attention=True)
        for number, translation in enumerate(self.translator.search(shown, settings)):
            log_translation(self.writer, number, step, translation, valid.ref[number])
        return val_loss, scores.bleu, scores.chrf

    def _decode(self, split: EvalSplit, beam_size: int) -> tuple[list[str], Scores]:
        """The model's translations of a val or test split, and their scores: exactly what
        translate.py and evaluate.py do with this model (empty lines give "")."""
        found = self.translator.iter_search(split.src, search_settings(self.cfg, beam_size))
        hypotheses = [translation.text for translation in found]
        return hypotheses, score(hypotheses, split.ref)

    def _test_average(self, best_val: Scores, best_test: Scores) -> _Averaged:
        """Average the kept evaluations' weights into checkpoints/averaged.pt, validate and test
        it; it is the final model (its weights stay loaded) if its val BLEU beats best.pt's.

        Both are validated with the test's beam, not the greedy search of training's
        evaluations: the choice is of the model that will decode with that beam (one run whose
        average lost on greedy val, 42.19 vs 42.30, won with beam 5, 43.09 vs 42.70)."""
        cfg, state = self.cfg.train, self.state
        steps = [int(step) for step, _ in state.kept_evals]
        paths = [self._eval_checkpoint(step) for step in steps]
        payload = average_payloads((load_checkpoint(path) for path in paths),
                                   [str(path) for path in paths])
        save_checkpoint(payload, self.checkpoint_dir / "averaged.pt")
        best_weights = {name: tensor.clone() for name, tensor in self.model.state_dict().items()}
        self.model.load_state_dict(payload["model"])
        _, val_scores = self._decode(self.data.valid, cfg.beam_size)
        hypotheses, test_scores = self._decode(self.data.test, cfg.beam_size)
        averaged = _Averaged(steps, val_scores, test_scores, hypotheses,
                             final=val_scores.bleu > best_val.bleu)
        if not averaged.final:
            self.model.load_state_dict(best_weights)
        log.info("averaged the weights of %d evaluations (%s, steps %s): val BLEU %.2f (best.pt "
                 "%.2f; beam %d), test BLEU %.2f (best.pt %.2f): the final model is %s",
                 len(steps), cfg.average_select.value, ", ".join(map(str, steps)),
                 val_scores.bleu, best_val.bleu, cfg.beam_size, averaged.test.bleu,
                 best_test.bleu,
                 "the average" if averaged.final else "best.pt")
        return averaged

    def _epochs_done(self) -> float:
        return self.state.epoch + self.state.batch_in_epoch / max(len(self.sampler), 1)

    def _save(self, name: str) -> None:
        """Checkpoint everything needed to translate or to resume exactly; never a NaN model.

        Every rank calls it (their RNG states are gathered); only rank 0 writes the file, and the
        others wait until it is on disk.
        """
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise TrainingError(f"the model has non-finite weights at step {self.state.step}; "
                                f"{name} was not overwritten")
        rng_per_rank = self.dist.gather(rng_states())
        if self.dist.is_main:
            payload = training_payload(self.model, self.cfg, self.tokenizer.to_bytes(),
                                       self.optimizer, self.scheduler, self.scaler,
                                       asdict(self.state), rng_per_rank)
            save_checkpoint(payload, self.checkpoint_dir / name)
        self.dist.barrier()

    def _test_and_report(self, stop_reason: str) -> dict[str, Any]:
        """Test the best checkpoint with the final beam (and, with checkpoint averaging, the
        average of the kept evaluations' weights, which becomes the final model if its val BLEU
        with that beam is higher); write results.json and HParams."""
        best = self.checkpoint_dir / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best)["model"])
        test, cfg, state = self.data.test, self.cfg.train, self.state
        started = time.perf_counter()
        hypotheses, scores = self._decode(test, cfg.beam_size)
        test_seconds = time.perf_counter() - started  # one decode of test, not the averaging's
        valid = {"split": self.data.valid.name, "bleu": state.best_bleu, "chrf": state.best_chrf,
                 "beam_size": cfg.valid_beam_size}
        averaging = None
        if len(state.kept_evals) >= 2:
            _, best_val = self._decode(self.data.valid, cfg.beam_size)
            averaged = self._test_average(best_val, scores)
            averaging = {"select": cfg.average_select.value, "steps": averaged.steps,
                         "final": averaged.final,
                         "valid": {"bleu": averaged.valid.bleu, "beam_size": cfg.beam_size},
                         "test": averaged.test.as_dict(),
                         "single": {"valid": {"bleu": best_val.bleu, "beam_size": cfg.beam_size},
                                    "test": scores.as_dict()}}
            final_val = best_val
            if averaged.final:
                hypotheses, scores, final_val = averaged.hypotheses, averaged.test, averaged.valid
            valid |= {"bleu": final_val.bleu, "chrf": final_val.chrf, "beam_size": cfg.beam_size}
        # the references beside the translations: report.py's significance test reads both
        for kind, lines in (("hyp", hypotheses), ("ref", test.ref)):
            atomic_write_text(self.run_dir / f"{test.name}.{kind}.txt", "\n".join(lines) + "\n")
        log.info("test %s, %d sentences%s (beam %d): BLEU %.2f chrF %.2f (lowercased BLEU %.2f) "
                 "in %.1fs", test.name, len(test),
                 " (data.max_eval_pairs: not the whole split)"
                 if self.cfg.data.max_eval_pairs is not None else "",
                 cfg.beam_size, scores.bleu, scores.chrf, scores.bleu_lowercase, test_seconds)
        log.info("BLEU signature: %s", scores.signatures["bleu"])
        results = run_results(
            config=to_plain(self.cfg), parameters=self.model.parameter_counts(),
            device=self.device, precision=precision_name(self.autocast_dtype),
            world_size=self.dist.world_size, stop_reason=stop_reason,
            epochs=self._epochs_done(), state=asdict(state),
            valid=valid, test={"split": test.name, "beam_size": cfg.beam_size, **scores.as_dict()},
            data=self.data.stats(), averaging=averaging)
        write_results(self.run_dir / "results.json", results)
        overrides = list(read_overrides(self.run_dir) or ())  # Hydra's, when Hydra runs it
        log_hparams(self.writer, results["config"], overrides, state.step, scores.bleu,
                    scores.chrf)
        return results
