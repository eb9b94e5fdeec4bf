"""Ablation sweeps end to end: `train.py -m experiment=...`, then `report.py`, then TensorBoard.

The experiment grids are checked by composing every job they launch; one tiny real sweep (2
attention types x 2 seeds on the tiny corpus) checks the job folders, the report and the HParams
data that TensorBoard shows.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from commands import command_env
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata

from seq2seq.cli.common import compose_config, sweep_jobs
from seq2seq.config import ATTENTION_CONFIGS, Config, DecoderStyle, to_object

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SEARCHES = ["tune_cpu"]  # Optuna's sweeper picks their jobs as it goes: no grid to enumerate
GRIDS = [experiment for experiment in EXPERIMENTS if experiment not in SEARCHES]


@dataclass
class Job:
    number: int  # hydra.job.num
    overrides: list[str]  # what the sweeper passes, experiment=NAME first
    config: Config
    subdir: str  # the job's folder name in the sweep dir


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def sweep_overrides(experiment: str) -> list[list[str]]:
    """The overrides of every job `train.py -m experiment=NAME` launches (a cartesian product;
    `glob(*)` over a config group means each of its files, as Hydra's sweeper expands it)."""
    cfg = compose_config([f"experiment={experiment}"], return_hydra_config=True)
    params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.params or {}).items()]
    choices = []
    for override in OverridesParser.create().parse_overrides(params):
        key = override.get_key_element()
        if isinstance(override.value(), Glob):
            choices.append([f"{key}={v}" for v in override.value().filter(options(key))])
        elif override.is_sweep_override():
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [[f"experiment={experiment}", *job] for job in itertools.product(*choices)]


@pytest.fixture(scope="module")
def grids() -> dict[str, tuple[int, list[Job]]]:
    """Per experiment: its number of jobs, and the jobs of seed 1 composed as Hydra would.

    (Other seeds train the same model; composing only seed 1 keeps this test fast.)
    """
    grids = {}
    for experiment in GRIDS:
        all_jobs = sweep_overrides(experiment)
        composed = []
        for number, overrides in enumerate(all_jobs):
            if "seed=1" not in overrides:
                continue
            cfg = compose_config([*overrides, f"hydra.job.num={number}"],
                                 return_hydra_config=True)
            task = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
            composed.append(Job(number, overrides, to_object(task), cfg.hydra.sweep.subdir))
        grids[experiment] = (len(all_jobs), composed)
    return grids


def settings(jobs: list[Job]) -> set[tuple]:
    """The distinct trained models: (attention, heads, decoder style, input feeding)."""
    return {(job.config.attention.type, getattr(job.config.attention, "num_heads", 1),
             job.config.model.decoder_style, job.config.model.input_feeding) for job in jobs}


def test_every_sweep_experiment_sweeps_something_and_recipes_are_one_run(grids):
    sweeps = {"attention_ablation", "decoder_ablation", "heads_ablation", "attention_cpu"}
    assert sweeps | {"cpu40", "distill_cpu40"} == set(grids)
    for experiment, (count, _) in grids.items():
        assert (count > 1) == (experiment in sweeps), experiment


def test_the_distilled_student_is_the_cpu40_recipe_on_the_distilled_corpus():
    cpu40, student = (to_object(compose_config([f"experiment={name}", "data.source=DIR"]))
                      for name in ("cpu40", "distill_cpu40"))
    for part in ("model", "attention", "train"):
        assert getattr(student, part) == getattr(cpu40, part), part
    assert student.data.corpus.value == "custom"
    assert student.data.train_files.tgt == "DIR/train.en"


def test_attention_ablation_is_every_scorer_times_three_seeds(grids):
    count, jobs = grids["attention_ablation"]
    assert count == 3 * len(ATTENTION_CONFIGS)
    assert {setting[0] for setting in settings(jobs)} == set(ATTENTION_CONFIGS)


def test_decoder_ablation_is_exactly_the_three_valid_decoders(grids):
    count, jobs = grids["decoder_ablation"]
    assert options("decoder") == ["bahdanau", "luong", "luong_input_feeding"]
    assert count == 9
    assert settings(jobs) == {
        ("additive", 1, DecoderStyle.luong, False),
        ("additive", 1, DecoderStyle.bahdanau, False),
        ("additive", 1, DecoderStyle.luong, True),
    }


def test_heads_ablation_varies_only_the_number_of_heads(grids):
    count, jobs = grids["heads_ablation"]
    assert count == 12
    assert {setting[:2] for setting in settings(jobs)} == {
        ("multihead", heads) for heads in (1, 2, 4, 8)}
    assert all(job.config.model.hidden_size % 8 == 0 for job in jobs)


def test_attention_cpu_gives_every_scorer_the_same_time_budget(grids):
    count, jobs = grids["attention_cpu"]
    assert count == len(ATTENTION_CONFIGS)
    assert sorted(job.config.attention.type for job in jobs) == sorted(ATTENTION_CONFIGS)
    assert {(job.config.train.max_minutes, job.config.model.hidden_size) for job in jobs} == \
        {(40, 256)}


def test_tune_cpu_searches_the_cpu_recipe_for_the_best_val_bleu():
    cfg = compose_config(["experiment=tune_cpu"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"train.lr", "train.batch_tokens", "model.embedding_dropout",
                                   "model.output_dropout", "model.word_dropout"}
    task = to_object(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]))
    assert task.train.max_minutes == 40 and task.attention.type == "general"  # cpu40's


def test_a_search_is_checked_at_the_edges_of_its_space_before_any_trial():
    jobs = sweep_jobs(["experiment=tune_cpu"])
    assert len(jobs) == 1 + 1 + 2 + 1 + 1 + 1  # the first job, then each other edge once
    assert jobs[0][:5] == ["train.lr=0.0005", "train.batch_tokens=2000",
                           "model.embedding_dropout=0.1", "model.output_dropout=0.2",
                           "model.word_dropout=0.0"]
    assert {job[0] for job in jobs} == {"train.lr=0.0005", "train.lr=0.004"}
    assert {job[1] for job in jobs} == {f"train.batch_tokens={n}" for n in (2000, 3000, 4000)}


def test_job_folder_names_are_short_readable_and_flat(grids):
    for _, jobs in grids.values():
        for job in jobs:
            swept = [o for o in job.overrides if not o.startswith("experiment=")]
            assert job.subdir == f"{job.number}_" + ",".join(swept)
            assert "/" not in job.subdir and len(job.subdir) < 100


# ---- one real sweep -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sweep(tiny_run, build_once) -> Path:
    """`train.py -m experiment=attention_ablation` shrunk to 2 scorers x 2 seeds, 10 steps each,
    in a process of its own as a user starts it."""
    def sweep(root: Path) -> None:
        done = subprocess.run([
            sys.executable, str(REPO / "scripts" / "train.py"),
            "-m", "experiment=attention_ablation", "attention=additive,dot", "seed=1,2",
            *tiny_run, "train.max_steps=10", "train.num_plot_sentences=1",
            f"hydra.sweep.dir={root / 'multirun'}",
        ], cwd=root, env=command_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    return build_once("tiny_sweep", sweep) / "multirun"


JOBS = ["0_attention=additive,seed=1", "1_attention=additive,seed=2", "2_attention=dot,seed=1",
        "3_attention=dot,seed=2"]


def test_each_job_writes_its_results_into_a_readable_folder(tiny_sweep):
    assert sorted(p.name for p in tiny_sweep.iterdir() if p.is_dir()) == JOBS
    for job in JOBS:
        results = json.loads((tiny_sweep / job / "results.json").read_text())
        assert results["config"]["attention"]["type"] == job.split("=")[1].split(",")[0]
        assert results["seed"] == int(job[-1])


def test_report_has_one_row_per_attention_type_with_spread(tiny_sweep, run_command):
    done = run_command("report", [str(tiny_sweep)], cwd=tiny_sweep)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tiny_sweep / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["attention=additive", "attention=dot"]
    for row in rows:
        # 4 scores and the 3 val attention statistics of the runs' results.json, 2 seeds
        assert row.count("±") == 7 and "| 2 | " in row
    # the runs saved their test translations and references: the report tested them
    assert sum(row.rstrip(" |").endswith("| best") for row in rows) == 1
    # the other: the signed difference and its p, or that both score the same
    assert any(re.search(r"\| ([+-]\d+\.\d\d, p=\d\.\d{3}(, n\.s\.)?|0\.00, the same score) \|",
                         row) for row in rows), rows
    assert "`debug=smoke`" in report and "missing" not in done.stdout
    assert (tiny_sweep / "report.png").stat().st_size > 0
    assert rows[0] in done.stdout


def test_tensorboard_shows_each_job_as_a_named_run_with_its_hparams(tiny_sweep):
    """What `tensorboard --logdir SWEEP` reads: one run per job, HParams session and metrics."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tiny_sweep))
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == [f"{job}/tb" for job in JOBS]
    content = multiplexer.PluginRunToTagToContent(hparams_metadata.PLUGIN_NAME)
    for job in JOBS:
        run = f"{job}/tb"
        tags = content[run]
        assert hparams_metadata.EXPERIMENT_TAG in tags
        start = hparams_metadata.parse_session_start_info_plugin_data(
            tags[hparams_metadata.SESSION_START_INFO_TAG])
        assert f"attention={start.hparams['attention.type'].string_value}" in job
        assert f"seed={start.hparams['seed'].number_value:.0f}" in job
        # the chosen settings and the run's own overrides, no paths and no 75-key dump
        assert {"model.hidden_size", "train.lr", "train.max_steps"} <= set(start.hparams)
        assert not any(key.startswith(("data.root", "data.train_files", "train.log_every"))
                       for key in start.hparams)
        experiment = hparams_metadata.parse_experiment_plugin_data(
            tags[hparams_metadata.EXPERIMENT_TAG])
        metrics = {info.name.tag for info in experiment.metric_infos}
        assert metrics == {"1_val/bleu", "1_val/chrf", "1_val/loss", "3_test/bleu",
                           "3_test/chrf"}
        results = json.loads((tiny_sweep / job / "results.json").read_text())
        (metric,) = multiplexer.Tensors(run, "3_test/bleu")  # at the final step
        assert metric.step == results["steps"]
        assert metric.tensor_proto.float_val[0] == pytest.approx(results["test"]["bleu"], abs=1e-4)
        val_steps = [event.step for event in multiplexer.Tensors(run, "1_val/bleu")]
        assert val_steps == sorted(set(val_steps)) and 0 not in val_steps  # no extra point


@pytest.fixture
def failing_sweep(run_command, tmp_path):
    """`failing_sweep(args) -> (sweep dir, stderr)`: `python scripts/train.py -m ARGS` run in this
    process from tmp_path, its jobs named by number, that must end with exit code 1."""
    sweep_dir = tmp_path / "multirun"

    def run(args: list[str]) -> tuple[Path, str]:
        done = run_command("train", ["-m", *args, f"data.root={tmp_path}/data",
                                     f"hydra.sweep.dir={sweep_dir}",
                                     "hydra.sweep.subdir=${hydra.job.num}"])
        assert done.returncode == 1, done.stderr[-3000:]
        return sweep_dir, done.stderr

    return run


@pytest.fixture
def reported(run_command):
    """`reported(sweep_dir)`: what `report.py SWEEP_DIR --no-plot` prints, by line."""
    return lambda sweep_dir: run_command("report", [str(sweep_dir), "--no-plot"]).stdout \
        .splitlines()


# a vocabulary the tiny corpus cannot give (at most 156 pieces): a job that fails once it runs,
# in its data work, which no check of the config can foresee
TOO_LARGE_VOCAB = "data.tokenizer.vocab_size=1000"


def too_large(vocab_size: int) -> str:
    """The error of a job whose vocabulary the tiny corpus cannot give."""
    return (f"data.tokenizer.vocab_size={vocab_size} is too large for this training data (800 "
            "sentences): sentencepiece can build at most 156 pieces; set "
            "data.tokenizer.vocab_size=156 or less")


TOO_LARGE = too_large(1000)
QUICK = ["train.max_steps=2", "train.eval_every=2", "data.max_eval_pairs=4"]


def test_a_failed_job_does_not_cancel_the_rest_of_the_sweep(tiny_run, failing_sweep, reported):
    sweep_dir, err = failing_sweep([*tiny_run, f"{TOO_LARGE_VOCAB},128", *QUICK])
    assert f"error: {TOO_LARGE}\n" in err
    assert err.splitlines()[-1] == ("error: 1 of 2 jobs failed (see their train.log): "
                                    f"0: {TOO_LARGE}")
    assert f"[ERROR] - {TOO_LARGE}\n" in (sweep_dir / "0" / "train.log").read_text()
    assert not (sweep_dir / "0" / "results.json").exists()
    assert (sweep_dir / "1" / "results.json").is_file()  # the second job still ran
    assert f"missing: {sweep_dir / '0'}: failed: {TOO_LARGE}" in reported(sweep_dir)


def test_jobs_that_die_of_no_user_error_are_logged_counted_and_reported(tiny_run, failing_sweep,
                                                                        monkeypatch, reported):
    """Errors that are not the user's (sentencepiece's thread pool on a machine short of
    threads, memory, a bug) once escaped the job as a traceback that ended the sweep, with no
    summary and nothing in the job's train.log."""
    from seq2seq.data.tokenizer import Tokenizer

    encode = Tokenizer.encode_src
    failures = [RuntimeError("Resource temporarily unavailable"), MemoryError()]

    def short_of_resources(self, lines):  # the first encode of jobs 0 and 1 fails
        if failures:
            raise failures.pop(0)
        return encode(self, lines)

    monkeypatch.setattr(Tokenizer, "encode_src", short_of_resources)
    sweep_dir, err = failing_sweep([*tiny_run, "seed=1,2,3", *QUICK])
    lines = {"0": "RuntimeError: Resource temporarily unavailable", "1": "MemoryError"}
    for job, line in lines.items():
        log = (sweep_dir / job / "train.log").read_text()
        assert f"[ERROR] - {line}\nTraceback (most recent call last):\n" in log
        assert log.endswith(f"in short_of_resources\n    raise failures.pop(0)\n{line}\n")
        assert f"error: {line} (the traceback is in {sweep_dir / job / 'train.log'})\n" in err
    assert err.splitlines()[-1] == ("error: 2 of 3 jobs failed (see their train.log): "
                                    f"0: {lines['0']}; 1: {lines['1']}")
    assert (sweep_dir / "2" / "results.json").is_file()  # the third job still ran
    report = reported(sweep_dir)
    for job, line in lines.items():
        assert f"missing: {sweep_dir / job}: failed: {line}" in report


def test_a_sweep_whose_every_job_fails_exits_non_zero(tiny_run, failing_sweep):
    _, err = failing_sweep([*tiny_run, f"{TOO_LARGE_VOCAB},2000"])
    assert err.splitlines()[-1] == ("error: 2 of 2 jobs failed (see their train.log): "
                                    f"0: {TOO_LARGE}; 1: {too_large(2000)}")


@pytest.mark.parametrize("args,line", [
    # Hydra's answer was 8 lines
    (["train.bogus=1,2"], "error: sweep job 0 (train.bogus=1): train.bogus: Key 'bogus' not in "
                          "'TrainConfig'; its keys: batch_tokens,"),
    # a bad value stops the sweep before any job ran, not as one failed job found out later
    (["train.lr=-1,0.003"], "error: sweep job 0 (train.lr=-1): train.lr=-1.0 is invalid: "
                            "expected a float in (0, 10]\n"),
    (["attention=multihead", "attention.num_heads=4,3"],
     "error: sweep job 1 (attention.num_heads=3): attention.num_heads=3 is invalid: expected a "
     "divisor of model.hidden_size=512"),
    (["experiment=heads_ablation", "seed=1", "attention.num_heads=1,3"],
     "error: sweep job 1 (attention.num_heads=3): attention.num_heads=3 is invalid"),
    (["attention=null,dot"], "error: sweep job 0 (attention=null): attention=null is invalid: "
                             "expected one of additive, dot, general, multihead\n"),
    # a search sweeper's space: its edges, before any trial
    (["experiment=tune_cpu", "train.lr=tag(log, interval(0.001, 40))"],
     "error: sweep job 1 (train.lr=40.0): train.lr=40.0 is invalid: expected a float in (0, 10]"),
    (["model.decoder_layers=1,1000000000"],
     "error: sweep job 1 (model.decoder_layers=1000000000): the model of "),
])
def test_every_job_of_a_sweep_is_checked_before_hydra_starts(refused_training, tmp_path, args,
                                                             line):
    err = refused_training(["-m", *args, f"hydra.sweep.dir={tmp_path / 'multirun'}"])
    assert err.startswith(line)
    assert not (tmp_path / "multirun").exists()


def test_a_sweep_dir_under_a_file_is_one_line(refused_training, tmp_path):
    (tmp_path / "file").write_text("x")
    err = refused_training(["-m", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'file' / 'sw'}"])
    assert err == (f"error: sweep job 0 (seed=1): the sweep dir (hydra.sweep.dir) "
                   f"{tmp_path / 'file' / 'sw'} cannot be created: {tmp_path / 'file'} is a "
                   "file\n")


def test_a_job_folder_name_too_long_for_the_file_system_names_the_override(refused_training,
                                                                          tmp_path):
    """Hydra names a job's folder by its overrides (0_data.name=...), a name the file system
    refused with a traceback."""
    name = "a" * 300
    err = refused_training(["-m", f"data.name={name},x", f"hydra.sweep.dir={tmp_path}/multirun"])
    # messages cut what they quote to 40 characters
    assert err == (f"error: sweep job 0 (data.name={'a' * 30}...): the job folder name "
                   f"0_data.name={'a' * 28}... is 312 bytes, over the 255 a folder name may "
                   f"have: data.name={'a' * 30}... (310 bytes) makes it long; shorten it, or name "
                   "the jobs by number with hydra.sweep.subdir=${hydra.job.num}\n")
    # paths are left out of the names: a long one names no folder (and seed=-1 is the error)
    err = refused_training(["-m", f"data.source=/{name},/x", "seed=-1",
                            f"hydra.sweep.dir={tmp_path}/multirun"])
    assert err.startswith(f"error: sweep job 0 (data.source=/{'a' * 27}...): seed=-1 is invalid")


def test_a_sweep_into_the_folder_of_a_finished_one_is_refused(refused_training, tiny_sweep,
                                                               tiny_run):
    kept = (tiny_sweep / JOBS[0] / "results.json").read_bytes()
    err = refused_training(["-m", "experiment=attention_ablation", "attention=additive,dot",
                            "seed=1,2", *tiny_run, f"hydra.sweep.dir={tiny_sweep}"])
    assert err.startswith(f"error: sweep job 0 (attention=additive seed=1): {tiny_sweep / JOBS[0]} "
                          "already holds a run (checkpoints/best.pt, checkpoints/last.pt, "
                          "results.json)")
    assert err.endswith("choose another hydra.sweep.dir\n")
    assert (tiny_sweep / JOBS[0] / "results.json").read_bytes() == kept
