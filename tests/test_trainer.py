"""The training loop on a tiny corpus: run dir, TensorBoard, exact resume, signals, NaN handling."""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import signal
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata

from seq2seq.analysis.attention_stats import AttentionStats, corpus_stats
from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import Schedule, TrainConfig
from seq2seq.data.prepare import prepare_data
from seq2seq.errors import CheckpointError, TrainingError
from seq2seq.inference.forced import forced_attention
from seq2seq.inference.translator import Translator
from seq2seq.training import trainer as trainer_module
from seq2seq.training.precision import precision_name
from seq2seq.training.progress import EpochProgress
from seq2seq.training.setup import build_trainer
from seq2seq.training.state import AlreadyFinished, Interrupted, TrainState
from seq2seq.training.tensorboard import Board, plotted_lines
from seq2seq.training.validation import forced_validation

# the tiny run, with two evaluations, frequent logging and an attention plot (one: plotting is
# most of a tiny run's time; tests/test_visualize.py covers the sentences after the first)
TRAINER_RUN = ["train.max_steps=24", "train.eval_every=12", "train.log_every=4",
               "train.beam_size=2", "data.max_eval_pairs=20", "train.num_plot_sentences=1"]


@pytest.fixture(scope="module")
def tiny_setup(compose, tiny_run):
    """A config and its prepared data, shared by the tests (sentencepiece trains once)."""
    cfg = compose([*tiny_run, *TRAINER_RUN])
    return cfg, prepare_data(cfg.data, cfg.train.batch_tokens)


def with_train(cfg, **changes):
    from dataclasses import replace

    return replace(cfg, train=replace(cfg.train, **changes))


# Runs that several tests only read, trained once per worker (not shared between workers: each
# trains its own tokenizer, and the tests compare these runs exactly with runs of their own).
SIX_STEPS = {"max_steps": 6, "eval_every": 3}


@pytest.fixture(scope="module")
def full_run(tiny_setup, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny run, uninterrupted: its run dir and what fit() returned."""
    cfg, data = tiny_setup
    run_dir = tmp_path_factory.mktemp("full_run")
    return run_dir, build_trainer(cfg, run_dir, data).fit()


@pytest.fixture(scope="module")
def six_step_run(tiny_setup, tmp_path_factory) -> tuple[Path, dict]:
    """A finished 6-step run (evaluated at steps 3 and 6): its run dir and what fit() returned."""
    cfg, data = tiny_setup
    run_dir = tmp_path_factory.mktemp("six_step_run")
    return run_dir, build_trainer(with_train(cfg, **SIX_STEPS), run_dir, data).fit()


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_run_dir_holds_checkpoints_tensorboard_and_results(full_run, tiny_setup):
    tmp_path, results = full_run
    cfg, data = tiny_setup
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test"]["signatures"]["bleu"].startswith("nrefs:1")
    assert 0 <= saved["test"]["bleu"] <= 100 and saved["steps"] == 24
    assert saved["parameters"]["total"] > 0 and saved["tokens_per_s"] > 0
    assert 0 <= saved["other_busy_cores"] <= (os.cpu_count() or 1)  # read from /proc/stat
    assert results["valid"]["bleu"] == saved["valid"]["bleu"]
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    scalars, images = events.Tags()["scalars"], events.Tags()["images"]
    for tag in ("2_train/loss", "2_train/learning_rate", "2_train/grad_norm",
                "2_train/tokens_per_s", "1_val/loss", "1_val/perplexity", "1_val/bleu",
                "1_val/chrf"):
        assert tag in scalars
    plotted = plotted_lines(data.valid.src_ids, cfg.train.num_plot_sentences)
    assert len(plotted) == cfg.train.num_plot_sentences
    assert sorted(images) == sorted(f"attention/sentence_{line}" for line in plotted)
    # the checkpoint is self-contained: config, tokenizer and weights
    best = load_checkpoint(tmp_path)
    assert best["config"]["model"]["hidden_size"] == 32 and best["tokenizer"]["src"]



def test_attention_statistics_of_every_evaluation_and_of_the_final_model(full_run, tiny_setup):
    """Each evaluation logs the val split's forced-decoding statistics (from its val loss pass);
    results.json holds the final model's on val and test, the ones forced decoding gives for
    best.pt."""
    run_dir, results = full_run
    _, data = tiny_setup
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    for name in ("entropy", "coverage", "diagonal"):
        assert [e.step for e in events.Scalars(f"1_val/attention_{name}")] == [12, 24]
    translator = Translator.from_checkpoint(run_dir / "checkpoints" / "best.pt", device="cpu")
    for block, split in (("valid", data.valid), ("test", data.test)):
        [expected] = corpus_stats(w for _, w in forced_attention(translator, split.src_ids,
                                                                 split.tgt_ids))
        assert results[block]["attention"] == pytest.approx(asdict(expected))
    # an evaluation's statistics come with its val loss, from the same forced decoding
    val_loss, attention = forced_validation(translator.model, data.valid.src_ids,
                                            data.valid.tgt_ids, 400, torch.device("cpu"), None)
    [stats] = corpus_stats(attention)
    assert asdict(stats) == pytest.approx(results["valid"]["attention"])
    assert val_loss > 0
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["test"]["attention"] == results["test"]["attention"]


def test_each_heads_statistics_are_curves_beside_the_average(tmp_path):
    board = Board(tmp_path)
    board.attention_scalars(5, [AttentionStats(1.0, 0.5, 0.25), AttentionStats(2.0, 0.1, 0.2),
                                AttentionStats(0.0, 0.9, 0.3)])
    board.close()
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert events.Scalars("1_val/attention_entropy")[0].value == 1.0
    assert events.Scalars("1_val/attention_coverage/head_1")[0].value == pytest.approx(0.1)
    assert events.Scalars("1_val/attention_diagonal/head_2")[0].value == pytest.approx(0.3)

def test_tensorboard_lists_the_val_curves_first_and_shows_booleans_as_text(tmp_path):
    board = Board(tmp_path)
    board.train_scalars(1, loss=2.0, grad_norm=1.0, lr=1e-3, tokens_per_s=100.0)
    board.val_scalars(1, loss=2.0, bleu=10.0, chrf=30.0)
    config = {"model": {"input_feeding": True, "hidden_size": 32}, "seed": 1}
    board.hparams(config, ["model.input_feeding=true"], 1, test_bleu=11.0, test_chrf=31.0)
    board.close()
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    scalars = multiplexer.PluginRunToTagToContent("scalars")["tb"]
    groups = sorted({tag.split("/")[0] for tag in scalars})
    assert groups == ["1_val", "2_train", "3_test"]  # the Scalars page's order, val open
    tags = multiplexer.PluginRunToTagToContent(hparams_metadata.PLUGIN_NAME)["tb"]
    start = hparams_metadata.parse_session_start_info_plugin_data(
        tags[hparams_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model.input_feeding"].string_value == "true"
    assert start.hparams["model.hidden_size"].number_value == 32


def test_training_is_deterministic_on_cpu(tiny_setup, tmp_path):
    cfg, data = tiny_setup
    cfg = with_train(cfg, max_steps=12)
    first = build_trainer(cfg, tmp_path / "a", data).fit()
    second = build_trainer(cfg, tmp_path / "b", data).fit()
    assert first["valid"]["bleu"] == second["valid"]["bleu"]
    for name, tensor in weights(tmp_path / "a" / "checkpoints" / "last.pt").items():
        assert torch.equal(tensor, weights(tmp_path / "b" / "checkpoints" / "last.pt")[name])


def test_the_cpu_trains_in_fp32_with_amp_on_and_results_say_so(tiny_setup, tmp_path):
    cfg, data = tiny_setup
    assert cfg.train.amp
    results = build_trainer(with_train(cfg, max_steps=6, eval_every=6), tmp_path, data).fit()
    assert results["precision"] == "fp32"
    assert [precision_name(dtype) for dtype in (torch.bfloat16, torch.float16)] == \
        ["bf16 autocast", "fp16 autocast"]


@pytest.mark.parametrize("schedule", [Schedule.plateau, Schedule.linear, Schedule.wsd])
def test_sigterm_saves_last_and_resume_matches_uninterrupted_run(tiny_setup, tmp_path,
                                                                 monkeypatch, schedule):
    cfg, data = tiny_setup
    cfg = with_train(cfg, schedule=schedule)
    full = build_trainer(cfg, tmp_path / "full", data).fit()

    interrupted = build_trainer(cfg, tmp_path / "cut", data)
    real_step = interrupted.train_step

    def step_then_sigterm(batch):
        loss = real_step(batch)
        if interrupted.state.step == 7:  # mid-epoch, between two evaluations
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(interrupted, "train_step", step_then_sigterm)
    with pytest.raises(Interrupted) as stop:
        interrupted.fit()
    assert stop.value.signum == signal.SIGTERM
    assert load_checkpoint(tmp_path / "cut", "last.pt")["state"]["step"] == 7

    resumed_cfg = with_train(cfg, resume=str(tmp_path / "cut"))
    resumed = build_trainer(resumed_cfg, tmp_path / "resumed", data).fit()
    assert resumed["steps"] == full["steps"]
    assert resumed["valid"]["bleu"] == full["valid"]["bleu"]
    full_weights = weights(tmp_path / "full" / "checkpoints" / "last.pt")
    for name, tensor in weights(tmp_path / "resumed" / "checkpoints" / "last.pt").items():
        torch.testing.assert_close(tensor, full_weights[name], rtol=0, atol=0)


def test_a_linear_decay_ends_at_min_lr_when_the_time_budget_does(tiny_setup, tmp_path,
                                                                monkeypatch):
    """The decay follows max_minutes, not max_epochs: here a clock that reads one second later
    each time makes every step take one second, so a one-minute budget is 60 steps."""
    cfg, data = tiny_setup
    cfg = with_train(cfg, schedule=Schedule.linear, max_steps=None, max_epochs=100_000,
                     max_minutes=1.0, eval_every=30)
    clock = itertools.count()
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: float(next(clock)))
    trainer = build_trainer(cfg, tmp_path, data)
    lrs = []  # the lr of each step
    real_step = trainer.train_step

    def recording_step(batch):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return real_step(batch)

    monkeypatch.setattr(trainer, "train_step", recording_step)
    assert trainer.fit()["steps"] == 60
    # the share spent is that of the steps before the update: the lr falls by the same amount
    # each second, from lr to min_lr, which the last step is within one second of
    lr, min_lr = cfg.train.lr, cfg.train.min_lr
    # (a step's share of max_epochs is under 1/10,000 of its share of the time budget)
    assert lrs[0] == lr and lrs[1] == pytest.approx(lr, rel=1e-3)
    falls = [before - after for before, after in itertools.pairwise(lrs[1:])]
    assert falls == pytest.approx([(lr - min_lr) / 60] * 58, rel=1e-3)
    assert lrs[-1] == pytest.approx(min_lr + (lr - min_lr) * 2 / 60)


@pytest.mark.parametrize("seconds_per_step", [1, 3])  # a fast machine, and one 3x slower
def test_wsd_has_decayed_to_min_lr_when_the_time_budget_ends_at_any_speed(
        tiny_setup, tmp_path, monkeypatch, seconds_per_step):
    """A one-minute budget is 60 steps at 1 s a step and 20 at 3 s: either way the lr holds for
    the first 80% of the minute and reaches min_lr by its end (a fake clock, no sleeps)."""
    cfg, data = tiny_setup
    cfg = with_train(cfg, schedule=Schedule.wsd, decay_share=0.2, max_steps=None,
                     max_epochs=100_000, max_minutes=1.0, eval_every=10)
    clock = itertools.count(step=seconds_per_step)
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: float(next(clock)))
    trainer = build_trainer(cfg, tmp_path, data)
    lrs = []  # the lr of each step, and of the update after the last
    real_step = trainer.train_step

    def recording_step(batch):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return real_step(batch)

    monkeypatch.setattr(trainer, "train_step", recording_step)
    steps = trainer.fit()["steps"]
    assert steps == 60 // seconds_per_step
    lr, min_lr = cfg.train.lr, cfg.train.min_lr
    stable = [rate for rate in lrs if rate == pytest.approx(lr)]
    # the first 80% of the minute (the share a step's lr follows is that of the steps before
    # the previous one: the first two steps both have spent none)
    assert len(stable) == 0.8 * steps + 2
    assert lrs == sorted(lrs, reverse=True)  # then only down
    def wsd(share: float) -> float:
        return min_lr + (lr - min_lr) * (1 - math.sqrt((share - 0.8) / 0.2))

    # the last step, two steps from the end, and the lr the budget's last second set: on the
    # schedule's curve to min_lr, which a run of thousands of steps ends within a step of
    assert lrs[-1] == pytest.approx(wsd(1 - 2 / steps), rel=1e-3)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(wsd(1 - 1 / steps), rel=1e-3)


def scalar_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if not tag.endswith("tokens_per_s")}


def test_a_run_resumed_in_place_shows_the_curves_of_an_uninterrupted_one(tiny_setup, full_run,
                                                                         tmp_path, monkeypatch):
    cfg, data = tiny_setup
    cut = build_trainer(cfg, tmp_path / "cut", data)
    real_step = cut.train_step

    def step_then_sigterm(batch):
        loss = real_step(batch)
        if cut.state.step == 12:  # an evaluation step: it is logged, then last.pt is saved
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(cut, "train_step", step_then_sigterm)
    with pytest.raises(Interrupted):
        cut.fit()
    build_trainer(with_train(cfg, resume=str(tmp_path / "cut")), tmp_path / "cut", data).fit()
    full, resumed = scalar_curves(full_run[0]), scalar_curves(tmp_path / "cut")
    assert resumed.keys() == full.keys()
    assert [step for step, _ in resumed["1_val/bleu"]] == [12, 24]
    for tag, curve in full.items():
        assert resumed[tag] == curve, tag


def test_the_log_says_the_run_dir_and_how_long_an_epoch_and_the_run_take(tiny_setup, tmp_path,
                                                                          caplog):
    cfg, data = tiny_setup
    with caplog.at_level(logging.INFO, logger="seq2seq.training"):
        build_trainer(with_train(cfg, max_steps=6, eval_every=6), tmp_path, data).fit()
    messages = [r.getMessage() for r in caplog.records]
    assert f"run dir {tmp_path.resolve()}" in messages
    assert any(m.startswith("at this speed: ") and "per epoch, at most " in m for m in messages)
    assert not any("diverging" in m for m in messages)  # lr=0.003 learns


class Terminal(io.StringIO):
    """stdout and stderr of a terminal: where Hydra's console log and the progress bar meet."""

    def isatty(self) -> bool:
        return True


def test_a_log_line_while_the_bar_is_shown_starts_a_line_of_its_own(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    console = logging.StreamHandler(sys.stdout)  # Hydra's console handler
    monkeypatch.setattr(logging.root, "handlers", [console])
    state = TrainState(step=1, train_seconds=1.0, train_tokens=477)
    with EpochProgress([[0], [1]], state, TrainConfig(), 2, show=True) as progress:
        for _ in progress:
            progress.step_done(2.5, 1e-3)
            logging.getLogger("seq2seq.training").warning("val bleu 1.0")
            break
    assert logging.root.handlers == [console]  # given back when the bar goes
    before, _ = terminal.getvalue().split("val bleu 1.0")
    assert "tok_s=477" in before and before.endswith(("\r", "\n"))


def test_a_loss_far_above_a_uniform_guess_warns_once_that_training_diverges(tiny_setup, tmp_path,
                                                                            caplog):
    """lr=10 (the largest allowed) climbs to a loss of ~300 in 20 steps without a NaN."""
    cfg, data = tiny_setup
    with caplog.at_level(logging.WARNING, logger="seq2seq.training"):
        build_trainer(with_train(cfg, lr=10.0, max_steps=6, eval_every=6), tmp_path, data).fit()
    warnings = [r.getMessage() for r in caplog.records if "diverging" in r.getMessage()]
    vocab = data.tokenizer.tgt_vocab_size
    assert len(warnings) == 1
    assert f"the loss of a uniform guess over the {vocab} target subwords" in warnings[0]
    assert "lower train.lr (now 10)" in warnings[0]


def test_a_gpu_sized_model_on_the_cpu_points_at_the_cpu_recipe(tiny_setup, tmp_path, caplog):
    cfg, data = tiny_setup
    big = replace(cfg, model=replace(cfg.model, hidden_size=288, embedding_size=32),
                  train=replace(cfg.train, max_steps=1, eval_every=1))
    with caplog.at_level(logging.WARNING, logger="seq2seq.training"):
        build_trainer(big, tmp_path, data).fit()
    assert any("experiment=cpu40 is the CPU recipe" in r.getMessage() for r in caplog.records)


def test_a_signal_during_the_test_stops_at_once_and_resume_runs_the_test(tiny_setup, six_step_run,
                                                                         tmp_path, monkeypatch):
    cfg, data = tiny_setup
    cfg = with_train(cfg, **SIX_STEPS)
    _, full = six_step_run
    cut = build_trainer(cfg, tmp_path / "cut", data)
    real_decode = cut._decode

    def sigterm_in_the_test(split, beam_size):
        if split.src == data.test.src:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here, at once
        return real_decode(split, beam_size)

    monkeypatch.setattr(cut, "_decode", sigterm_in_the_test)
    with pytest.raises(Interrupted) as stop:
        cut.fit()
    assert stop.value.signum == signal.SIGTERM
    assert not (tmp_path / "cut" / "results.json").exists()
    state = load_checkpoint(tmp_path / "cut", "last.pt")["state"]
    assert state["finished"] and state["step"] == 6
    again = with_train(cfg, resume=str(tmp_path / "cut"))
    resumed = build_trainer(again, tmp_path / "cut", data).fit()  # tests, trains no further
    assert resumed["steps"] == 6 and resumed["test"]["bleu"] == full["test"]["bleu"]
    with pytest.raises(AlreadyFinished):  # now that results.json is there
        build_trainer(again, tmp_path / "cut", data)


def test_resuming_a_finished_run_does_nothing_but_say_so(tiny_setup, six_step_run, tmp_path):
    cfg, data = tiny_setup
    done, _ = six_step_run
    last = (done / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(AlreadyFinished, match="finished at step 6 \\(max_steps"):
        build_trainer(with_train(cfg, **SIX_STEPS, resume=str(done)), tmp_path / "again", data)
    assert (done / "checkpoints" / "last.pt").read_bytes() == last
    assert not (tmp_path / "again").exists()


def test_a_finished_run_with_a_larger_budget_trains_on_to_it(tiny_setup, six_step_run, tmp_path):
    cfg, data = tiny_setup
    longer = with_train(cfg, max_steps=9, eval_every=3, resume=str(six_step_run[0]))
    results = build_trainer(longer, tmp_path / "longer", data).fit()
    assert results["steps"] == 9


def fake_cpu_load(monkeypatch, other_cores: float) -> None:
    """/proc/stat as it reads while other processes keep `other_cores` busy beside this one's
    own half core: each reading is one second on."""
    from seq2seq import cpu_load

    cores = os.cpu_count() or 1
    readings = itertools.count(1)

    def read() -> cpu_load.CpuTimes:
        second = next(readings)
        busy = (other_cores + 0.5) * 100 * second  # jiffies, 100 a second per core
        return cpu_load.CpuTimes(total=cores * 100 * second, idle=int(cores * 100 * second - busy),
                                 own=0.5 * second, wall=float(second))

    monkeypatch.setattr(cpu_load, "read_cpu_times", read)


def test_results_say_how_busy_other_processes_kept_the_cpu_across_a_resume(tiny_setup, tmp_path,
                                                                         monkeypatch):
    cfg, data = tiny_setup
    load = min(1.0, (os.cpu_count() or 1) - 0.5)  # what fits beside the run's half core
    fake_cpu_load(monkeypatch, load)
    short = build_trainer(with_train(cfg, max_steps=8, eval_every=4), tmp_path / "short",
                          data).fit()
    assert short["other_busy_cores"] == pytest.approx(load)
    fake_cpu_load(monkeypatch, 0.0)  # the machine went idle: the resumed run adds its samples
    longer = with_train(cfg, max_steps=16, eval_every=4, resume=str(tmp_path / "short"))
    results = build_trainer(longer, tmp_path / "longer", data).fit()
    # the mean over the seconds sampled (one per reading here), before the resume and after
    loaded, total = (load_checkpoint(tmp_path / run / "checkpoints" / "last.pt")["state"]
                     ["load_seconds"] for run in ("short", "longer"))
    assert 0 < loaded < total
    assert results["other_busy_cores"] == pytest.approx(load * loaded / total)
    saved = json.loads((tmp_path / "longer" / "results.json").read_text())
    assert saved["other_busy_cores"] == results["other_busy_cores"]


def test_resume_with_another_model_is_refused(tiny_setup, tmp_path, compose):
    cfg, data = tiny_setup
    build_trainer(with_train(cfg, max_steps=2, eval_every=2), tmp_path / "run", data).fit()
    other = compose([f"data.root={cfg.data.root}", "debug=smoke", "model.hidden_size=48",
                     f"train.resume={tmp_path / 'run'}"])
    from dataclasses import replace

    other = replace(other, data=cfg.data)
    with pytest.raises(CheckpointError, match="model.hidden_size"):
        build_trainer(other, tmp_path / "other", data)


def test_non_finite_losses_are_skipped_then_stop_the_run(tiny_setup, tmp_path, monkeypatch,
                                                         caplog):
    cfg, data = tiny_setup
    trainer = build_trainer(with_train(cfg, max_steps=6, eval_every=3, max_nan_steps=3), tmp_path,
                            data)
    real_forward = trainer.loss.forward
    calls = {"n": 0}

    def forward_with_nans(*args, **kwargs):
        loss, alignment = real_forward(*args, **kwargs)
        calls["n"] += 1
        if trainer.model.training and calls["n"] in (2, 3):  # two bad batches, then recovery
            loss = loss * float("nan")
        return loss, alignment

    monkeypatch.setattr(trainer.loss, "forward", forward_with_nans)
    with caplog.at_level(logging.WARNING):
        trainer.fit()
    assert sum("non-finite" in r.message for r in caplog.records) == 2
    assert trainer.state.step == 6  # skipped batches are not counted as steps
    saved = weights(tmp_path / "checkpoints" / "last.pt")
    assert all(torch.isfinite(t).all() for t in saved.values())

    always_nan = build_trainer(with_train(cfg, max_nan_steps=3), tmp_path / "diverged", data)
    diverging_forward = always_nan.loss.forward
    monkeypatch.setattr(always_nan.loss, "forward", lambda *a, **k: tuple(
        part * float("nan") for part in diverging_forward(*a, **k)))
    with pytest.raises(TrainingError, match="3 consecutive non-finite"):
        always_nan.fit()


def test_a_nan_model_is_never_saved(tiny_setup, tmp_path):
    cfg, data = tiny_setup
    trainer = build_trainer(cfg, tmp_path, data)
    trainer._save("last.pt")
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingError, match="non-finite weights"):
        trainer._save("last.pt")
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_from_a_corrupt_checkpoint_is_a_clear_error(tiny_setup, tmp_path):
    cfg, data = tiny_setup
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        build_trainer(with_train(cfg, resume=str(tmp_path)), tmp_path / "new", data)
