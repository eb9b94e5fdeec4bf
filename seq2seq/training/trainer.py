"""The training loop: `Trainer.fit` runs a run that `training.setup.build_trainer` assembled.

`Trainer.fit` reads top to bottom: for each epoch, for each batch, one teacher-forced step
(`train_step`); every `train.eval_every` steps (or at the end of each epoch) a validation pass that
decides the schedule, the best checkpoint and early stopping. All counters that decide what happens
next live in `TrainState`, which every checkpoint carries, so a resumed run continues exactly where
the saved one stopped: same batch order, same RNG draws, same schedule. Side jobs live beside the
loop, one call each: `averaging`, `divergence`, `tensorboard`, `progress`, `finish`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from seq2seq.analysis.aer import (
    aligner_of,
    alignment_record,
    describe_record,
    link_counts,
    read_gold,
    scores_of,
)
from seq2seq.analysis.attention_stats import corpus_stats
from seq2seq.config import Config, to_plain
from seq2seq.data.batching import Batch, TokenBudgetSampler, collate
from seq2seq.data.prepare import EvalSplit, PreparedData
from seq2seq.errors import TrainingError
from seq2seq.inference.decoding import search_settings
from seq2seq.inference.forced import forced_attention, word_links
from seq2seq.inference.scores import Scores, score
from seq2seq.inference.translator import Translator
from seq2seq.nn.model import Seq2Seq
from seq2seq.runtime import StopRequest, peak_rss_mb, release_free_memory
from seq2seq.training.averaging import KeptEvaluations
from seq2seq.training.batches import resampled
from seq2seq.training.distributed import (
    Distributed,
    agree_on_stopping,
    batch_trace_path,
    trace_batch,
)
from seq2seq.training.divergence import DivergenceWatch
from seq2seq.training.finish import test_and_report
from seq2seq.training.guided_alignment import load_guided_alignment
from seq2seq.training.loss import SequenceLoss, sequence_loss
from seq2seq.training.optim import BudgetShare, is_plateau
from seq2seq.training.precision import precision_name
from seq2seq.training.progress import EpochProgress
from seq2seq.training.resume import save_training
from seq2seq.training.state import Interrupted, TrainState, budget_share, spent_budget
from seq2seq.training.tensorboard import Board, plotted_lines, too_few_plotted
from seq2seq.training.validation import forced_validation

log = logging.getLogger(__name__)


class Trainer:
    """Trains one model in one process; under torchrun, one of several DDP ranks (see README)."""

    def __init__(self, cfg: Config, run_dir: Path, data: PreparedData, model: Seq2Seq,
                 optimizer: torch.optim.Optimizer, scheduler, budget: BudgetShare,
                 scaler: torch.amp.GradScaler, sampler: TokenBudgetSampler, state: TrainState,
                 dist: Distributed, device: torch.device, autocast_dtype: torch.dtype | None,
                 board: Board | None) -> None:
        self.cfg, self.run_dir, self.data, self.model = cfg, run_dir, data, model
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.budget = budget  # the share spent, which the decaying schedules follow
        self.sampler, self.state, self.dist, self.device = sampler, state, dist, device
        self.autocast_dtype, self.board = autocast_dtype, board  # board: rank 0 only
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
        self.plotted = self._plotted_lines() if board is not None else []
        self.batch_trace = batch_trace_path(dist)
        self.kept = KeptEvaluations(self.checkpoint_dir, cfg.train)
        self.divergence = DivergenceWatch(data.tokenizer.tgt_vocab_size, cfg.train.lr)
        guided = cfg.train.guided_alignment  # read now: a bad file stops before training
        self.guided = load_guided_alignment(guided.file, guided.weight, data, cfg.data) \
            if guided.enabled else None
        alignments = cfg.data.valid_alignments
        self.valid_aligner = None if alignments is None else aligner_of(alignments)
        self.valid_gold = None if alignments is None else read_gold(
            alignments, data.valid.src, data.valid.ref, first=cfg.data.max_eval_pairs)

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train until a stop condition, then test the best checkpoint; returns results.json."""
        state = self.state
        # Ctrl-C / SIGTERM finish the current step, save last.pt and stop; a second one aborts
        # (under torchrun, which passes on to its workers the Ctrl-C they already had, it does not)
        with StopRequest(abort_on_second=not self.dist.enabled) as self.stop_request:
            if state.finished and spent_budget(state, self.cfg.train):
                log.info("training had finished (%s); the test is left", state.stop_reason)
            else:
                self._train()
            # saved: from here a signal ends the run at once; train.resume=RUN runs the test again
            self.stop_request.interrupt = self._interrupted
            self._agree_on_stopping(None)  # a signal during the last evaluation or save
            if self.stop_request.signum is not None:
                raise self._interrupted(self.stop_request.signum)
            # rank 0 tests and writes results.json while the others wait for its results here
            results = self.dist.broadcast(self._test_and_report(state.stop_reason)
                                          if self.dist.is_main else None)
        if self.board is not None:
            self.board.close()
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
        state.kept_evals = self.kept.finish(state.kept_evals, write=self.dist.is_main)
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
            if self.cfg.data.tokenizer.sampling.enabled:  # each epoch its own segmentation
                self.train, self.sampler = resampled(self.data, self.cfg, self.dist, state.epoch)
            self.sampler.set_epoch(state.epoch)
            # the epoch's batch order depends only on (seed, epoch): a resumed run skips the
            # batches it already trained and sees the rest in the same order
            batches = list(self.sampler)[state.batch_in_epoch:]
            with EpochProgress(batches, state, cfg, len(self.sampler),
                               self.dist.is_main) as progress:
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
                    progress.step_done(loss_per_token, self.optimizer.param_groups[0]["lr"])
                    self.divergence.check(state.step, loss_per_token)
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
            state.epoch += 1
            state.batch_in_epoch = 0
            if not cfg.eval_every and self._evaluate():
                return "early stopping"
        return "max_epochs"

    def train_step(self, batch: Batch) -> float | None:
        """One teacher-forced update; returns the translation loss per token (without the
        guided-alignment loss, which TensorBoard shows apart), or None if it was skipped."""
        cfg, state = self.cfg.train, self.state
        self.train_model.train()
        # normalise by the target tokens of all ranks' batches together, so that the update is
        # the one a single process would make on their union, whatever each rank's share
        num_tokens = self.dist.sum_over_ranks(batch.num_tgt_tokens)
        translation, alignment = (part / num_tokens for part in sequence_loss(
            self.train_model, batch, cfg.label_smoothing, self.autocast_dtype, self.guided))
        loss = translation + alignment * cfg.guided_alignment.weight
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
            translation.detach().float(), alignment.detach().float(), grad_norm.float(),
            torch.tensor(state.train_seconds, device=loss.device)]))
        loss_value, alignment_value, norm_value, train_seconds = (float(v) for v in stats.cpu())
        if not (math.isfinite(loss_value) and math.isfinite(alignment_value)
                and math.isfinite(norm_value)) \
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
        if state.step % cfg.log_every == 0 and self.board is not None:
            self.board.train_scalars(state.step, loss_value, norm_value,
                                     self.optimizer.param_groups[0]["lr"],
                                     state.train_tokens / max(state.train_seconds, 1e-9),
                                     alignment_value if self.guided is not None else None)
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

    def _agree_on_stopping(self, deadline: float | None) -> bool:
        """Whether the time is up, agreed with every rank (see distributed.agree_on_stopping)."""
        out_of_time = deadline is not None and self.state.train_seconds >= deadline
        return agree_on_stopping(self.dist, self.stop_request, out_of_time)

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
            state.kept_evals = self.kept.update(state.kept_evals, state.step, bleu,
                                                lambda: self._eval_payload(bleu),
                                                write=self.dist.is_main)
            self.dist.barrier()
        if improved:
            self._save("best.pt")
        self._save("last.pt")
        release_free_memory()  # what validation and saving freed
        if self.board is not None:
            self.board.flush()
        return cfg.patience > 0 and state.bad_evals >= cfg.patience

    def _eval_payload(self, bleu: float) -> dict[str, Any]:
        """This evaluation's weights as a self-contained checkpoint, kept for averaging."""
        return {"model": self.model.state_dict(), "config": to_plain(self.cfg),
                "tokenizer": self.tokenizer.to_bytes(), "training_data": self.data.record(),
                "state": {"step": self.state.step, "val_bleu": bleu}}

    def _validate(self) -> tuple[float, float, float]:
        """Val loss, BLEU and chrF, written to TensorBoard with the attention plots."""
        valid, step = self.data.valid, self.state.step
        val_loss, attention = forced_validation(self.model, valid.src_ids, valid.tgt_ids,
                                                self.cfg.train.batch_tokens, self.device,
                                                self.autocast_dtype)
        stats = corpus_stats(attention)
        alignment = None if self.valid_gold is None else self._forced_alignment(attention)[:2]
        log.info("val attention (forced on the references): entropy %.3f nats, coverage %.3f, "
                 "diagonal %.3f%s", stats[0].entropy, stats[0].coverage, stats[0].diagonal,
                 "" if alignment is None else f", {describe_record(*alignment)}")
        beam_size = self.cfg.train.valid_beam_size
        _, scores = self._decode(valid, beam_size)
        self.board.val_scalars(step, val_loss, scores.bleu, scores.chrf)
        self.board.attention_scalars(step, stats)
        if alignment is not None:
            self.board.alignment_scalars(step, *alignment)
        lines = self.plotted
        settings = search_settings(self.cfg, beam_size, attention=True)  # again, with attention
        found = self.translator.search([valid.src[line] for line in lines], settings)
        self.board.translations(step, lines, found, [valid.ref[line] for line in lines])
        return val_loss, scores.bleu, scores.chrf

    def _plotted_lines(self) -> list[int]:
        """The val lines whose attention cards every evaluation logs, said once if too few."""
        count, valid = self.cfg.train.num_plot_sentences, self.data.valid
        lines = plotted_lines(valid.src_ids, count)
        if warning := too_few_plotted(lines, count, len(valid)):
            log.warning(warning)
        return lines

    def _decode(self, split: EvalSplit, beam_size: int) -> tuple[list[str], Scores]:
        """The model's translations of a val or test split, and their scores: exactly what
        translate.py and evaluate.py do with this model (empty lines give "")."""
        found = self.translator.iter_search(split.src, search_settings(self.cfg, beam_size))
        hypotheses = [translation.text for translation in found]
        return hypotheses, score(hypotheses, split.ref)

    def _attention(self, split: EvalSplit) -> list[torch.Tensor]:
        """Each pair's attention (heads, T + 1, S + 1), in order, from forced decoding of the
        references (results.json's; each evaluation has them from its val loss pass)."""
        attention = [torch.empty(0)] * len(split)
        for i, weights in forced_attention(self.translator, split.src_ids, split.tgt_ids):
            attention[i] = weights
        return attention

    def _forced_alignment(self, attention: list[torch.Tensor]
                          ) -> tuple[str, dict[str, Any], np.ndarray]:
        """The val split's scores against data.valid_alignments, from its attention (an
        evaluation's val loss pass, or the final model's): alignment_record's key and block,
        and the link counts of each sentence."""
        valid = self.data.valid
        links = [word_links(weights, self.tokenizer, valid.src_ids[i], valid.tgt_ids[i])
                 for i, weights in enumerate(attention)]
        counts = link_counts(links, self.valid_gold)
        return (*alignment_record(self.cfg.data.valid_alignments, self.valid_aligner,
                                  scores_of(counts)), counts)

    def _epochs_done(self) -> float:
        return self.state.epoch + self.state.batch_in_epoch / max(len(self.sampler), 1)

    def _save(self, name: str) -> None:
        save_training(self.checkpoint_dir / name, self.model, self.cfg, self.data, self.optimizer,
                      self.scheduler, self.scaler, asdict(self.state), self.dist)

    def _test_and_report(self, stop_reason: str) -> dict[str, Any]:
        facts = {"device": self.device, "precision": precision_name(self.autocast_dtype),
                 "world_size": self.dist.world_size, "stop_reason": stop_reason,
                 "epochs": self._epochs_done()}
        return test_and_report(self.cfg, self.run_dir, self.model, self.data, self.state,
                               self._decode, self._attention,
                               None if self.valid_gold is None else self._forced_alignment,
                               self.kept,
                               self.board, facts)
