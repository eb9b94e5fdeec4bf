"""The end of a run: choose the final model (best.pt, or the average of the kept evaluations'
weights if its val BLEU is higher), test it, and write the test translations beside their
references, results.json and TensorBoard's HParams row."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from seq2seq.analysis.attention_stats import corpus_stats, stats_record
from seq2seq.analysis.run_dir import read_overrides
from seq2seq.analysis.sentence_figures import FILE as FIGURES_FILE
from seq2seq.analysis.sentence_figures import write_figures
from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import MIN_AVERAGED_CHECKPOINTS, Config, to_plain
from seq2seq.data.prepare import EvalSplit, PreparedData
from seq2seq.files import atomic_write_text
from seq2seq.inference.scores import Scores
from seq2seq.nn.model import Seq2Seq
from seq2seq.training.averaging import KeptEvaluations
from seq2seq.training.results import run_results, write_results
from seq2seq.training.state import TrainState
from seq2seq.training.tensorboard import Board

log = logging.getLogger(__name__)

# a split and a beam size in, the model's translations of the split and their scores out
Decode = Callable[[EvalSplit, int], tuple[list[str], Scores]]
# a split in, the model's attention on each pair out, (heads, T + 1, S + 1), forced decoding
Attend = Callable[[EvalSplit], list[Tensor]]
# the val split's attention in, its scores against data.valid_alignments out: "alignment" (AER
# vs gold) or "agreement" (a reference aligner), their block, and each sentence's link counts
Align = Callable[[list[Tensor]], tuple[str, dict[str, Any], np.ndarray]]


@dataclass
class Averaged:
    """The average of the kept evaluations' weights, scored with the test's beam."""

    steps: list[int]
    valid: Scores
    test: Scores
    hypotheses: list[str]  # its test translations
    final: bool  # its val BLEU beats best.pt's: it is the run's final model


def test_and_report(cfg: Config, run_dir: Path, model: Seq2Seq, data: PreparedData,
                    state: TrainState, decode: Decode, attend: Attend, align: Align | None,
                    kept: KeptEvaluations, board: Board | None,
                    facts: dict[str, Any]) -> dict[str, Any]:
    """Test the best checkpoint with the final beam (and, with checkpoint averaging, the
    average of the kept evaluations' weights, which becomes the final model if its val BLEU
    with that beam is higher); write results.json, with the final model's attention statistics
    on val and test (and, given `align`, its scores against data.valid_alignments), the val
    figures sentence by sentence (val.attention.tsv) and HParams; return results.json.
    `facts` are results.json's device, precision, world_size, stop_reason and epochs."""
    best = run_dir / "checkpoints" / "best.pt"
    if best.exists():
        model.load_state_dict(load_checkpoint(best)["model"])
    test, beam_size = data.test, cfg.train.beam_size
    started = time.perf_counter()
    hypotheses, scores = decode(test, beam_size)
    test_seconds = time.perf_counter() - started  # one decode of test, not the averaging's
    valid = {"split": data.valid.name, "bleu": state.best_bleu, "chrf": state.best_chrf,
             "beam_size": cfg.train.valid_beam_size}
    averaging = None
    if len(state.kept_evals) >= MIN_AVERAGED_CHECKPOINTS:
        _, best_val = decode(data.valid, beam_size)
        averaged = test_average(cfg, model, data, state, decode, kept, best_val, scores)
        averaging = {"select": cfg.train.average_select.value, "steps": averaged.steps,
                     "final": averaged.final,
                     "valid": {"bleu": averaged.valid.bleu, "beam_size": beam_size},
                     "test": averaged.test.as_dict(),
                     "single": {"valid": {"bleu": best_val.bleu, "beam_size": beam_size},
                                "test": scores.as_dict()}}
        final_val = best_val
        if averaged.final:
            hypotheses, scores, final_val = averaged.hypotheses, averaged.test, averaged.valid
        valid |= {"bleu": final_val.bleu, "chrf": final_val.chrf, "beam_size": beam_size}
    attention, counts = attend(data.valid), None
    valid["attention"] = stats_record(corpus_stats(attention))
    if align is not None:
        key, valid[key], counts = align(attention)
    # sentence by sentence, for the report's significance tests of the attention columns
    write_figures(run_dir / FIGURES_FILE, attention, counts)
    # the references beside the translations: report.py's significance test reads both
    for kind, lines in (("hyp", hypotheses), ("ref", test.ref)):
        atomic_write_text(run_dir / f"{test.name}.{kind}.txt", "\n".join(lines) + "\n")
    log.info("test %s, %d sentences%s (beam %d): BLEU %.2f chrF %.2f (lowercased BLEU %.2f) "
             "in %.1fs", test.name, len(test),
             " (data.max_eval_pairs: not the whole split)"
             if cfg.data.max_eval_pairs is not None else "",
             beam_size, scores.bleu, scores.chrf, scores.bleu_lowercase, test_seconds)
    log.info("BLEU signature: %s", scores.signatures["bleu"])
    results = run_results(
        config=to_plain(cfg), parameters=model.parameter_counts(), state=asdict(state),
        valid=valid, test={"split": test.name, "beam_size": beam_size, **scores.as_dict(),
                                 "attention": stats_record(corpus_stats(attend(test)))},
        data=data.stats(), averaging=averaging, **facts)
    write_results(run_dir / "results.json", results)
    if board is not None:
        overrides = list(read_overrides(run_dir) or ())  # Hydra's, when Hydra runs it
        board.hparams(results["config"], overrides, state.step, scores.bleu, scores.chrf)
    return results


def test_average(cfg: Config, model: Seq2Seq, data: PreparedData, state: TrainState,
                 decode: Decode, kept: KeptEvaluations, best_val: Scores,
                 best_test: Scores) -> Averaged:
    """Average the kept evaluations' weights into checkpoints/averaged.pt, validate and test
    it; it is the final model (its weights stay loaded) if its val BLEU beats best.pt's.

    Both are validated with the test's beam, not the greedy search of training's evaluations:
    the choice is of the model that will decode with that beam (one run whose average lost on
    greedy val, 42.19 vs 42.30, won with beam 5, 43.09 vs 42.70)."""
    beam_size = cfg.train.beam_size
    steps, payload = kept.average(state.kept_evals)
    best_weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.load_state_dict(payload["model"])
    _, val_scores = decode(data.valid, beam_size)
    hypotheses, test_scores = decode(data.test, beam_size)
    averaged = Averaged(steps, val_scores, test_scores, hypotheses,
                        final=val_scores.bleu > best_val.bleu)
    if not averaged.final:
        model.load_state_dict(best_weights)
    log.info("averaged the weights of %d evaluations (%s, steps %s): val BLEU %.2f (best.pt "
             "%.2f; beam %d), test BLEU %.2f (best.pt %.2f): the final model is %s",
             len(steps), cfg.train.average_select.value, ", ".join(map(str, steps)),
             val_scores.bleu, best_val.bleu, beam_size, averaged.test.bleu, best_test.bleu,
             "the average" if averaged.final else "best.pt")
    return averaged
