"""scripts/train.py end to end, as a user runs it, with real Hydra: in its own process for the
acceptance command and the `-m` sweeps, in this one (`run_command`) for the rest."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from commands import command_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]


def run_train(args: list[str], cwd: Path, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    """`python scripts/train.py ARGS` in a process of its own."""
    return subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *args], cwd=cwd,
                          env=env or command_env(), capture_output=True, text=True, timeout=600)


def assert_complete_run_dir(run_dir: Path) -> dict:
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "results.json", "train.log",
                 ".hydra/config.yaml"):
        assert (run_dir / name).exists(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"]["signatures"]["bleu"].startswith("nrefs:1|case:mixed")
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0}).Reload()
    assert {"2_train/loss", "1_val/bleu"} <= set(events.Tags()["scalars"])
    assert any(tag.startswith("attention/") for tag in events.Tags()["images"])
    return results


@pytest.mark.slow
def test_smoke_run_on_multi30k(multi30k_dir, tmp_path):
    """The acceptance command: the smoke config on the real corpus leaves a complete run dir.
    Two thirds of its 240 steps, with one evaluation at the end, show that it learns. Without a
    wait policy in its environment, the command chooses one from its look at the CPU, and logs
    what it saw."""
    run_dir = tmp_path / "smoke"
    env = {key: value for key, value in command_env().items()
           if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = run_train(["debug=smoke", "train.max_steps=160", "train.eval_every=160",
                      f"data.source={multi30k_dir}", f"data.root={tmp_path}/data",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = assert_complete_run_dir(run_dir)
    assert results["test"]["split"] == "test_2016_flickr"
    assert "idle CPU threads will " in (run_dir / "train.log").read_text()
    # a tiny model already translates a little: val BLEU 4.1 at step 160 (1.4 at 80 and 120)
    assert results["valid"]["bleu"] > 0.5


def train_variants(group: str, tiny_run: list[str], root: Path) -> None:
    """`train.py -m GROUP=<every option>`: one short run per option of a config group, in one
    process (each Python start costs seconds), in ROOT/multirun/<option>/."""
    options = sorted(path.stem for path in (REPO / "conf" / group).glob("*.yaml"))
    done = run_train(["-m", f"{group}={','.join(options)}", *tiny_run, "train.max_steps=20",
                      "train.eval_every=10", "data.max_eval_pairs=20",
                      "train.num_plot_sentences=1", f"data.root={root}/data",
                      f"hydra.sweep.dir={root / 'multirun'}",
                      f"hydra.sweep.subdir=${{hydra.runtime.choices.{group}}}"], cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def scorer_runs(tiny_run, build_once) -> Path:
    return build_once("scorer_runs", lambda root: train_variants("attention", tiny_run, root))


@pytest.fixture(scope="module")
def decoder_runs(tiny_run, build_once) -> Path:
    return build_once("decoder_runs", lambda root: train_variants("decoder", tiny_run, root))


@pytest.mark.slow
def test_every_scorer_trains_through_the_cli(scorer, scorer_runs):
    assert_complete_run_dir(scorer_runs / "multirun" / scorer)


@pytest.mark.slow
def test_every_decoder_trains_through_the_cli(decoder, decoder_runs):
    assert_complete_run_dir(decoder_runs / "multirun" / decoder.name)


@pytest.mark.parametrize("override,words", [
    ("attention=foo", ["attention", "foo", "additive"]),
    ("train.lr=-1", ["train.lr", "-1"]),
    ("model.hidden_size=abc", ["model.hidden_size", "abc"]),
    ("train.no_such_key=1", ["no_such_key"]),
    ("+train.no_such_key=1", ["no_such_key"]),
])
def test_wrong_override_fails_in_one_line_without_traceback(override, words, run_command,
                                                            tmp_path):
    done = run_command("train", [override, f"hydra.run.dir={tmp_path}/run"])
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    for word in words:
        assert word in done.stderr
    assert not (tmp_path / "data").exists()  # it stopped before any work


@pytest.mark.parametrize("override,words", [
    ("data.root={file}/data", ["data.root", "is a file"]),
    ("hydra.run.dir={file}/run", ["hydra.run.dir", "is a file"]),
    # root passes every permission check, and /proc still refuses new files
    ("hydra.run.dir=/proc/nope", ["/proc/nope cannot be written: /proc does not take new files"]),
])
def test_an_output_folder_that_cannot_be_made_is_one_line_before_any_work(
        refused_training, override, words, tmp_path):
    (tmp_path / "file").write_text("x")
    args = ["debug=smoke", override.format(file=tmp_path / "file")]
    if "hydra.run.dir" not in override:
        args.append(f"hydra.run.dir={tmp_path}/run")
    err = refused_training(args)
    for word in words:
        assert word in err
    assert not (tmp_path / "run").exists()


def test_a_model_too_large_for_this_machine_is_refused_before_any_data_work(refused_training,
                                                                           tmp_path):
    """It used to read the corpus, train the tokenizer, then fail on a 32 TB allocation."""
    err = refused_training(["debug=smoke", "model.decoder_layers=1000000000"])
    assert "model.decoder_layers=1000000000" in err and "needs at least 531.5 TB" in err
    assert "more than this machine's" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "outputs").exists()


@pytest.fixture(scope="module")
def two_step_runs(tiny_run, build_once) -> Path:
    """The run dir of a finished 2-step run, trained once through the CLI in its own process."""
    def train(root: Path) -> None:
        done = run_train([*tiny_run, "train.max_steps=2", "train.eval_every=2",
                          f"hydra.run.dir={root / 'run'}"], cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]

    return build_once("two_step_run", train) / "run"


@pytest.fixture
def two_step_run(two_step_runs, tmp_path) -> Path:
    """A copy of the finished 2-step run, for a test to change."""
    return Path(shutil.copytree(two_step_runs, tmp_path / "run"))


@pytest.mark.slow
def test_train_resume_alone_continues_the_run_in_place_with_its_overrides(two_step_run,
                                                                          run_command, tmp_path):
    run_dir = two_step_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = run_command("train", [f"train.resume={run_dir}", "train.max_steps=4"],
                          cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 4
    assert list(elsewhere.iterdir()) == []  # no new outputs/ folder
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    assert [e.step for e in events.Scalars("1_val/bleu")] == [2, 4]


def test_a_failed_first_try_says_why_once_and_leaves_no_empty_run_dir(run_command, tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_command("train", ["debug=smoke", f"data.source={tmp_path / 'empty'}",
                                 f"data.root={tmp_path / 'data'}"])
    assert done.returncode == 1
    assert done.stderr.count("data.source must be a directory holding") == 1
    assert "data.source must be" not in done.stdout  # not echoed by the console log as well
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("ending", ["interrupted", "finished"])
def test_a_stopped_or_finished_run_says_so_once_on_the_terminal_and_in_train_log(
        ending, tiny_run, tmp_path, monkeypatch, run_command):
    from seq2seq.training import setup
    from seq2seq.training.state import AlreadyFinished, Interrupted, TrainState

    run_dir = tmp_path / "run"
    if ending == "interrupted":
        stop = Interrupted(signal.SIGTERM, run_dir / "checkpoints" / "last.pt")
        message, code = f"stopped: {stop}", 128 + signal.SIGTERM
    else:
        stop = AlreadyFinished("max_steps", TrainState(step=2))
        message, code = str(stop), 0

    class Stops:
        def fit(self):
            raise stop

    monkeypatch.setattr(setup, "build_trainer", lambda config, run_dir: Stops())
    exit_code, out, err = run_command("train", [*tiny_run, f"hydra.run.dir={run_dir}"])
    assert exit_code == code
    assert (out + err).count(str(stop)) == 1 and message in err.splitlines()
    assert (run_dir / "train.log").read_text().count(str(stop)) == 1


def test_help_says_what_the_command_does_its_choices_examples_and_outputs(run_command):
    done = run_command("train", ["--help"])
    assert done.returncode == 0
    assert done.stdout.startswith("seq2seq-train (python scripts/train.py): train")
    assert "attention: additive, dot, general, multihead" in done.stdout
    assert "decoder: bahdanau, luong, luong_input_feeding" in done.stdout
    assert "experiment=cpu40" in done.stdout and "== Outputs ==" in done.stdout


def test_a_new_run_may_not_overwrite_a_run_dir_that_holds_a_run(two_step_run, tiny_run,
                                                                refused_training):
    run_dir = two_step_run
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    err = refused_training([*tiny_run, f"hydra.run.dir={run_dir}"])
    assert "already holds a run" in err and "train.resume=" in err
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before
    assert "hydra.run.dir) is empty" in refused_training(["hydra.run.dir=''"])

    # without last.pt, its best.pt, results.json and settings are still a run's
    (run_dir / "checkpoints" / "last.pt").unlink()
    kept = {name: (run_dir / name).read_bytes()
            for name in ("checkpoints/best.pt", "results.json", ".hydra/overrides.yaml")}
    err = refused_training([*tiny_run, "train.max_steps=4", f"hydra.run.dir={run_dir}"])
    assert "already holds a run (checkpoints/best.pt, results.json): choose another" in err
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept


def test_a_refused_resume_leaves_the_runs_settings_alone(two_step_run, run_command):
    run_dir = two_step_run
    saved = (run_dir / ".hydra" / "overrides.yaml").read_text()
    refused = run_command("train", [f"train.resume={run_dir}", "model.hidden_size=48"])
    assert refused.returncode == 1 and "model.hidden_size is 48 here" in refused.stderr
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == saved
    (run_dir / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    broken = run_command("train", [f"train.resume={run_dir}"])
    assert broken.returncode == 1 and broken.stderr.count("\n") == 1
    assert "overrides.yaml is unreadable" in broken.stderr and "Traceback" not in broken.stderr



def test_a_failed_resume_of_a_run_without_checkpoints_keeps_its_records(run_command, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    records = {".hydra/overrides.yaml": "- debug=smoke\n", ".hydra/config.yaml": "seed: 1\n",
               "train.log": "the first try's log\n"}
    for name, text in records.items():
        (run_dir / name).write_text(text)
    done = run_command("train", [f"train.resume={run_dir}"])
    assert done.returncode == 1 and "no checkpoint 'last.pt'" in done.stderr, done.stderr
    for name, text in records.items():
        assert (run_dir / name).read_text().startswith(text), name


def test_a_failed_run_in_a_users_folder_removes_only_what_it_made(run_command, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "train.log").write_text("my notes\n")
    (tmp_path / "empty").mkdir()
    done = run_command("train", ["debug=smoke", f"data.source={tmp_path / 'empty'}",
                                 f"data.root={tmp_path / 'data'}", f"hydra.run.dir={folder}"])
    assert done.returncode == 1 and "data.source must be a directory holding" in done.stderr
    assert sorted(path.name for path in folder.iterdir()) == ["train.log"]  # no .hydra/ left
    assert (folder / "train.log").read_text().startswith("my notes\n")

