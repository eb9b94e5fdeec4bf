"""Sweeps beyond Hydra's basic launcher: jobs side by side (hydra/launcher=parallel, joblib),
in processes of their own (submitit's local executor, as SLURM runs them), a preempted job
requeued and resumed, a job of two tasks trained as one DDP model from SLURM's variables, and
Optuna's search; and what a job takes from its launcher (threads, a GPU of its own).

The sweeps run as a user starts them, in a process of their own: the launchers start workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from commands import command_env
from ddp import DISTRIBUTED_RUN
from omegaconf import OmegaConf
from server_process import free_port

from seq2seq.checkpoint import load_checkpoint
from seq2seq.cli import launcher_job
from seq2seq.cpu_load import machine_cores
from seq2seq.errors import TrainingError
from seq2seq.training.distributed import task_environment

REPO = Path(__file__).resolve().parents[1]
BY_NUMBER = "hydra.sweep.subdir=${hydra.job.num}"  # tiny_run's paths make long folder names
TOO_LARGE_VOCAB = "data.tokenizer.vocab_size=1000"  # the tiny corpus gives at most 156 pieces


def train_command(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *args], cwd=cwd,
                          env=command_env(**env), capture_output=True, text=True, timeout=300)


def results(job_dir: Path) -> dict:
    return json.loads((job_dir / "results.json").read_text())


# ---- what a job takes from its launcher ---------------------------------------------------


def launcher(target: str, **settings) -> OmegaConf:
    return OmegaConf.create({"_target_": f"plugins.{target}", **settings})


@pytest.mark.parametrize("settings,cores,threads", [
    ({"_": "BasicLauncher"}, 8, None),  # one job at a time: torch's default, as a single run
    ({"_": "JoblibLauncher", "n_jobs": 2}, 8, 4),
    ({"_": "JoblibLauncher", "n_jobs": -1}, 8, 1),  # joblib's -1: one job per core
    ({"_": "JoblibLauncher", "n_jobs": -2}, 8, 1),  # all cores but one: 7 jobs
    ({"_": "JoblibLauncher", "n_jobs": 16}, 8, 1),
    ({"_": "LocalLauncher", "cpus_per_task": 3}, 8, 3),
    ({"_": "LocalLauncher", "tasks_per_node": 2}, 8, 4),
])
def test_a_job_takes_its_share_of_the_cores(settings, cores, threads, monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    target = settings.pop("_")
    assert launcher_job.job_threads(launcher(target, **settings), cores) == threads


def test_a_slurm_task_takes_the_cpus_slurm_gave_it(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert launcher_job.job_threads(launcher("SlurmLauncher", cpus_per_task=None), 64) == 6


def test_threads_on_the_command_line_win_over_the_share(compose, tmp_path):
    cfg = compose(["debug=smoke"])  # the recipe's 2 threads are for a run alone
    hydra = OmegaConf.create({"launcher": {"_target_": "x.JoblibLauncher", "n_jobs": 64},
                              "overrides": {"task": ["debug=smoke"]}})
    assert launcher_job.settled(cfg, hydra, tmp_path).train.num_threads == 1
    hydra.overrides.task.append("train.num_threads=3")
    given = compose(["debug=smoke", "train.num_threads=3"])
    assert launcher_job.settled(given, hydra, tmp_path).train.num_threads == 3


def test_jobs_side_by_side_never_share_a_gpu(compose, tmp_path, monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for key in ("SLURM_JOB_ID", "WORLD_SIZE", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(key, raising=False)
    cfg = compose(["device=auto"])
    two_at_once = launcher("JoblibLauncher", n_jobs=2)
    # each claim opens its own lock file, as another process would
    with launcher_job.own_gpu(cfg, two_at_once, tmp_path):
        with launcher_job.own_gpu(cfg, two_at_once, tmp_path):
            assert chosen == [0, 1]
            with pytest.raises(TrainingError, match=r"every GPU of this machine \(2\) is in use "
                                                    r"by another job of this sweep: run at most "
                                                    r"2 jobs at once"):
                with launcher_job.own_gpu(cfg, two_at_once, tmp_path):
                    pass
    with launcher_job.own_gpu(cfg, two_at_once, tmp_path):  # the claims went with their jobs
        assert chosen == [0, 1, 0]
    with launcher_job.own_gpu(compose(["device=cpu"]), two_at_once, tmp_path):
        assert chosen == [0, 1, 0]  # a CPU job claims nothing


def test_slurm_variables_become_torchruns(monkeypatch):
    pytest.importorskip("submitit")  # the cluster extra, which dev installs
    for key in ("WORLD_SIZE", "SUBMITIT_EXECUTOR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8",
             "SLURM_PROCID": "5",
             "SLURM_LOCALID": "1", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1",
             "SLURM_JOB_NODELIST": "gpu[07-08]"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    env = task_environment()
    assert {key: env[key] for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR")} == \
        {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "MASTER_ADDR": "gpu07"}
    assert 20000 <= int(env["MASTER_PORT"]) < 60000
    assert task_environment()["MASTER_PORT"] == env["MASTER_PORT"]  # every task agrees
    monkeypatch.setenv("MASTER_PORT", "29555")
    assert task_environment()["MASTER_PORT"] == "29555"
    monkeypatch.delenv("SLURM_STEP_NUM_TASKS")
    assert task_environment() == {}  # the batch script of an 8-task allocation: one process
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert task_environment() == {}  # one task: no process group
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert task_environment() == {}  # torchrun's own


# ---- sweeps as users run them -------------------------------------------------------------


@pytest.mark.slow
def test_a_parallel_sweep_runs_two_jobs_at_once_and_reports(tiny_run, tmp_path, run_command):
    sweep_dir = tmp_path / "multirun"
    tiny = [arg for arg in tiny_run if not arg.startswith(("train.num_threads=", "data.root="))]
    done = train_command(["-m", *tiny, "seed=1,2", "train.max_steps=10",
                          f"data.root={tmp_path / 'data'}", "hydra/launcher=parallel",
                          "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}", BY_NUMBER],
                         tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2," in done.stdout + done.stderr
    share = max(1, machine_cores() // 2)
    for job in ("0", "1"):
        assert results(sweep_dir / job)["steps"] == 10
        assert results(sweep_dir / job)["config"]["train"]["num_threads"] == share
    logs = [(sweep_dir / job / "train.log").read_text() for job in ("0", "1")]
    assert sum("trained sentencepiece" in log for log in logs) == 1  # data.root prepared once
    assert sum("reusing sentencepiece" in log for log in logs) == 1
    report = run_command("report", [str(sweep_dir), "--no-plot"])
    assert report.returncode == 0, report.stderr
    assert (sweep_dir / "report.md").is_file() and "missing:" not in report.stdout


@pytest.mark.slow
def test_a_submitit_local_sweep_runs_each_job_in_a_process_of_its_own(tiny_run, tmp_path,
                                                                      run_command):
    sweep_dir = tmp_path / "multirun"
    done = train_command(["-m", *tiny_run, "seed=1,2", "train.max_steps=10",
                          "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep_dir}",
                          BY_NUMBER], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [results(sweep_dir / job)["steps"] for job in ("0", "1")] == [10, 10]
    assert len(list((sweep_dir / ".submitit").glob("*/*_0_result.pkl"))) == 2
    report = run_command("report", [str(sweep_dir), "--no-plot"])
    assert report.returncode == 0, report.stderr
    assert "missing:" not in report.stdout
    assert report.stdout.splitlines()[2].split(" | ")[-2] == "2"  # one setting, seeds 1 and 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["basic", "parallel", "submitit_local"])
def test_a_failed_job_makes_the_sweep_fail_with_every_launcher(kind, tiny_run, tmp_path):
    sweep_dir = tmp_path / "multirun"
    done = train_command(["-m", *tiny_run, f"{TOO_LARGE_VOCAB},128", "train.max_steps=2",
                          "train.eval_every=2", f"hydra/launcher={kind}",
                          f"hydra.sweep.dir={sweep_dir}", BY_NUMBER], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1].startswith(
        "error: 1 of 2 jobs failed (see their train.log): 0: data.tokenizer.vocab_size=1000 "
        "is too large for this training data")
    assert (sweep_dir / "1" / "results.json").is_file()  # the other job still ran
    assert not (sweep_dir / ".jobs").exists()  # the outcomes were read, and removed


@pytest.fixture(scope="module")
def uninterrupted(tiny_run, build_once) -> Path:
    """PREEMPTED_RUN trained in one go, as a single run (in a process of its own)."""
    def train(root: Path) -> None:
        done = train_command([*tiny_run, *PREEMPTED_RUN, f"hydra.run.dir={root / 'run'}"], root)
        assert done.returncode == 0, done.stderr[-3000:]

    return build_once("uninterrupted", train) / "run"


PREEMPTED_RUN = ["train.max_steps=300", "train.eval_every=100", "train.log_every=20", "seed=1"]


def preempted_sweep(tiny_run, tmp_path: Path, signum: str) -> tuple[Path, int, str]:
    """A submitit_local sweep of PREEMPTED_RUN whose task gets `signum` (kill -s) once it
    trains: the sweep dir, the sweep's exit code and stderr."""
    sweep_dir = tmp_path / "multirun"
    sweep = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), "-m", *tiny_run, *PREEMPTED_RUN,
         "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep_dir}", BY_NUMBER],
        cwd=tmp_path, env=command_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        task = wait_for_training(sweep_dir / "0" / "train.log", sweep_dir)
        subprocess.run(["kill", "-s", signum, task], check=True)
        _, err = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    return sweep_dir, sweep.returncode, err


def assert_same_run(ours: Path, theirs: Path) -> None:
    """Two run dirs that hold the same results and the same final weights."""
    mine, other = results(ours), results(theirs)
    assert mine["steps"] == other["steps"] == 300
    assert mine["valid"]["bleu"] == other["valid"]["bleu"]
    assert mine["test"]["bleu"] == other["test"]["bleu"]
    weights = [load_checkpoint(path, "best.pt")["model"] for path in (ours, theirs)]
    for name, tensor in weights[1].items():
        torch.testing.assert_close(weights[0][name], tensor, rtol=0, atol=0)


@pytest.mark.slow
def test_a_preempted_job_requeues_and_ends_as_an_uninterrupted_one(tiny_run, tmp_path,
                                                                  uninterrupted):
    """USR2, as SLURM sends it before a time limit (or at a preemption, with
    PreemptParameters=send_user_signal), and submitit's local controller before its timeout:
    the job saves last.pt, submitit requeues it, and it continues from there."""
    sweep_dir, code, err = preempted_sweep(tiny_run, tmp_path, "USR2")
    assert code == 0, err[-3000:]
    text = (sweep_dir / "0" / "train.log").read_text()
    assert "SIGUSR2 received: saving last.pt after this step" in text
    assert "this job's folder holds its last.pt (the job was started again): continuing it" \
        in text
    assert_same_run(sweep_dir / "0", uninterrupted)


@pytest.mark.slow
def test_a_job_stopped_by_sigterm_saves_its_run_and_the_sweep_names_it(tiny_run, tmp_path,
                                                                      uninterrupted,
                                                                      run_command):
    """SIGTERM (kill, scancel) ends the job unfinished with its last.pt: the sweep ends with the
    failed-job line, not submitit's traceback, and train.resume continues the job exactly."""
    sweep_dir, code, err = preempted_sweep(tiny_run, tmp_path, "TERM")
    job_dir = sweep_dir / "0"
    assert code == 1, err[-3000:]
    assert err.splitlines()[-1] == (
        "error: 1 of 1 jobs failed (see their train.log): 0: stopped: interrupted by SIGTERM; "
        f"state saved to {job_dir / 'checkpoints' / 'last.pt'}; continue with "
        f"train.resume={job_dir}")
    assert "Traceback" not in err
    resumed = run_command("train", [f"train.resume={job_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(job_dir, uninterrupted)


def wait_for_training(log: Path, sweep_dir: Path, timeout: float = 120) -> str:
    """The PID of the submitit task that trains, once its train.log shows a training step."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and "] - step 20 epoch" in log.read_text():
            found = subprocess.run(["pgrep", "-f", f"submitit.core._submit {sweep_dir}"],
                                   capture_output=True, text=True)
            return found.stdout.split()[0]
        time.sleep(0.05)  # polling a file, not timing a test
    raise AssertionError(f"no training step in {log} after {timeout} s")


@pytest.mark.slow
def test_a_submitit_job_of_two_tasks_trains_one_ddp_model(tiny_run, tmp_path):
    sweep_dir = tmp_path / "multirun"
    done = train_command(["-m", *tiny_run, *DISTRIBUTED_RUN, "hydra/launcher=submitit_local",
                          "hydra.launcher.tasks_per_node=2", f"hydra.sweep.dir={sweep_dir}",
                          BY_NUMBER], tmp_path, SEQ2SEQ_DIST_TIMEOUT_MINUTES="2")
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = results(sweep_dir / "0")
    assert ddp["world_size"] == 2 and ddp["steps"] == 20  # as torchrun's 2 processes
    assert (sweep_dir / "0" / "train.log").read_text().count("results in") == 1  # rank 0's


@pytest.mark.slow
def test_two_slurm_tasks_train_one_ddp_model(tiny_run, tmp_path):
    """`srun --ntasks=2 python scripts/train.py ...`: each task reads its place from SLURM's
    variables, and the two train one model in one run dir, as torchrun's processes do."""
    port = str(free_port())
    tasks = [subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *tiny_run, *DISTRIBUTED_RUN],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=command_env(SLURM_JOB_ID="77", SLURM_NTASKS="2", SLURM_STEP_NUM_TASKS="2",
                        SLURM_STEP_ID="0", SLURM_PROCID=str(rank),
                        SLURM_LOCALID=str(rank), SLURM_NODEID="0", SLURM_JOB_NUM_NODES="1",
                        SLURM_JOB_NODELIST="localhost", MASTER_PORT=port,
                        SEQ2SEQ_DIST_TIMEOUT_MINUTES="2"))
        for rank in (0, 1)]
    outputs = [task.communicate(timeout=300) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][1][-3000:]
    (run,) = [path.parent for path in tmp_path.glob("outputs/*/*/results.json")]
    assert len(list(tmp_path.rglob("results.json"))) == 1
    assert results(run)["world_size"] == 2 and results(run)["steps"] == 20


@pytest.mark.slow
def test_optuna_searches_three_trials_and_keeps_the_best_val_bleu(tiny_run, tmp_path,
                                                                 run_command):
    sweep_dir = tmp_path / "multirun"
    done = train_command(["-m", *tiny_run, "train.max_steps=60", "train.eval_every=30",
                          "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                          "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                          "hydra.sweeper.sampler.seed=1",
                          "train.lr=tag(log, interval(0.001, 0.03))",
                          f"hydra.sweep.dir={sweep_dir}", BY_NUMBER], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = {job: results(sweep_dir / job) for job in ("0", "1", "2")}
    assert len({trial["config"]["train"]["lr"] for trial in trials.values()}) == 3
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    top = max(trials.values(), key=lambda trial: trial["valid"]["bleu"])
    assert best.best_value == top["valid"]["bleu"]
    assert best.best_params["train.lr"] == pytest.approx(top["config"]["train"]["lr"])
    report = run_command("report", [str(sweep_dir), "--no-plot"])
    assert report.returncode == 0, report.stderr
    assert "missing:" not in report.stdout


@pytest.mark.parametrize("choice", ["slurm", "submitit_slurm"])
def test_the_slurm_launcher_config_prints_for_a_cluster_user(choice, run_command):
    done = run_command("train", ["-m", f"hydra/launcher={choice}", "--cfg", "hydra"])
    assert done.returncode == 0, done.stderr
    launcher = OmegaConf.create(done.stdout).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    for key in ("partition", "timeout_min", "gpus_per_node", "tasks_per_node", "cpus_per_task",
                "array_parallelism", "setup", "max_num_timeout"):
        assert key in launcher
    if choice == "slurm":  # ours: a time limit that fits a CPU or GPU run, requeues on time-out
        assert (launcher.timeout_min, launcher.max_num_timeout) == (240, 3)


@pytest.mark.parametrize("args,line", [
    (["hydra/launcher=parallel", "hydra.launcher.n_jobs=0"],
     "error: sweep job 0 (its only job): hydra.launcher.n_jobs=0 is invalid: expected a nonzero "
     "int: jobs at once, or -1 for one per core, -2 for all cores but one\n"),
    (["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=0"],
     "error: sweep job 0 (its only job): hydra.launcher.cpus_per_task=0 is invalid: expected "
     "null or an int >= 1\n"),
    (["hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=0"],
     "error: sweep job 0 (its only job): hydra.launcher.tasks_per_node=0 is invalid"),
    (["hydra/launcher=paralel"], "error: In 'hydra/config': Could not find "
                                 "'hydra/launcher/paralel' (choose from basic, joblib, parallel,"),
])
def test_launcher_settings_that_would_fail_at_launch_are_refused_first(args, line, tmp_path,
                                                                       refused_training):
    err = refused_training(["-m", "debug=smoke", *args, f"hydra.sweep.dir={tmp_path / 'm'}"])
    assert err.startswith(line)
    assert not (tmp_path / "m").exists()
