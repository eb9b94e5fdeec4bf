"""What a sweep job takes from the launcher that runs it: its share of the machine's cores, a GPU
of its own where several jobs share a machine, and, when a launcher starts it again after a
preemption or a time limit, the run it had begun.

Hydra's basic launcher runs one job at a time in the sweep's process; `hydra/launcher=parallel`
(Hydra's joblib launcher) runs `n_jobs` at once in worker processes; submitit runs each job in a
process of its own, all at once on this machine (`submitit_local`) or as SLURM jobs
(`submitit_slurm`, `slurm`), whose scheduler gives each job its cores and GPUs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seq2seq.config import Config, override_key
from seq2seq.cpu_load import machine_cores
from seq2seq.errors import ConfigError, TrainingError

log = logging.getLogger(__name__)

JOBLIB = "JoblibLauncher"
SUBMITIT_LOCAL = "LocalLauncher"
GPU_CLAIMS = ".gpus"  # in the sweep dir: one lock file per GPU, held by the job that uses it


def launcher_kind(launcher: DictConfig) -> str:
    """The launcher's class name, e.g. BasicLauncher, JoblibLauncher, LocalLauncher."""
    return str(launcher.get("_target_", "")).rsplit(".", 1)[-1]


def parallel_jobs(launcher: DictConfig, cores: int) -> int:
    """How many jobs of the sweep run at once on this machine: joblib's n_jobs (-1: one per
    core, -2: all cores but one, as joblib counts), one for the basic launcher. submitit's local
    executor starts every job at once; its jobs take `cpus_per_task` threads each."""
    if launcher_kind(launcher) != JOBLIB:
        return 1
    n_jobs = int(launcher.n_jobs)
    return max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)


def job_threads(launcher: DictConfig, cores: int) -> int | None:
    """A job's CPU threads when nobody set train.num_threads: the CPUs a scheduler gave its task
    (SLURM_CPUS_PER_TASK, submitit's cpus_per_task), else its share of this machine's cores
    among the jobs (or tasks of one job) that run at once; None (torch's default) for jobs that
    run one at a time in the sweep's process."""
    given = os.environ.get("SLURM_CPUS_PER_TASK") or launcher.get("cpus_per_task")
    if given:
        return int(given)
    kind = launcher_kind(launcher)
    if kind == JOBLIB:
        return max(1, cores // parallel_jobs(launcher, cores))
    if kind == SUBMITIT_LOCAL:
        return max(1, cores // int(launcher.get("tasks_per_node") or 1))
    return None


def check_launcher(launcher: DictConfig) -> None:
    """Launcher settings that would fail only once the sweep launches, refused before: joblib's
    n_jobs=0, and submitit's counts below 1. A ConfigError names the key and the value."""
    given = OmegaConf.to_container(launcher, resolve=False)  # n_jobs' default: ours, not read
    rules = {"n_jobs": ("a nonzero int: jobs at once, or -1 for one per core, -2 for all cores "
                        "but one", lambda value: value != 0),
             "cpus_per_task": ("null or an int >= 1", lambda value: value >= 1),
             "tasks_per_node": ("an int >= 1", lambda value: value >= 1),
             "gpus_per_node": ("null or an int >= 0", lambda value: value >= 0),
             "nodes": ("an int >= 1", lambda value: value >= 1),
             "timeout_min": ("minutes >= 1", lambda value: value >= 1)}
    for key, (expected, valid) in rules.items():
        value = given.get(key)
        if value is None or isinstance(value, str) and value.startswith("${"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not valid(value):
            raise ConfigError(f"hydra.launcher.{key}={value} is invalid: expected {expected}")


def settled(config: Config, hydra_config: DictConfig, run_dir: Path) -> Config:
    """`config` for a sweep job: its share of the cores, unless the command line sets
    train.num_threads (a recipe's value, e.g. debug=smoke's 2, is for a run alone on the
    machine); and a resume from its own last.pt when its folder holds one. check_sweep refuses
    to start a sweep whose job folders hold runs, so only a job that a launcher started again
    finds one: submitit after a preemption or a time limit, SLURM after it requeued the job."""
    train = config.train
    given = any(override_key(o) == "train.num_threads" for o in hydra_config.overrides.task)
    cores = machine_cores()
    threads = job_threads(hydra_config.launcher, cores)
    if not given and threads is not None:
        log.info("this job trains with %d CPU thread(s): its share of this machine's %d cores "
                 "(set train.num_threads to choose)", threads, cores)
        train = replace(train, num_threads=threads)
    if not train.resume and (run_dir / "checkpoints" / "last.pt").is_file():
        log.warning("this job's folder holds its last.pt (the job was started again): "
                    "continuing it")
        train = replace(train, resume=str(run_dir))
    return replace(config, train=train)


@contextmanager
def own_gpu(config: Config, launcher: DictConfig, sweep_dir: Path) -> Iterator[None]:
    """While a job runs beside others on one machine, it holds a GPU that no other job of the
    sweep holds, and trains on it: joblib's workers all see every GPU, and submitit's local
    executor shows each job the same first ones. Under SLURM the scheduler gives each job its
    own GPUs, and a job of several tasks (DDP) uses one per task: neither takes a claim."""
    import torch

    shared = parallel_jobs(launcher, machine_cores()) > 1 or \
        launcher_kind(launcher) == SUBMITIT_LOCAL
    if (not shared or config.device.value == "cpu" or "SLURM_JOB_ID" in os.environ
            or int(os.environ.get("WORLD_SIZE", "1")) > 1 or not torch.cuda.is_available()):
        yield
        return
    folder = sweep_dir / GPU_CLAIMS
    folder.mkdir(parents=True, exist_ok=True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    count = torch.cuda.device_count()
    for index in range(count):
        physical = visible[index] if len(visible) == count else str(index)
        with (folder / f"{physical}.lock").open("a") as claim:
            try:
                fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another job's
            torch.cuda.set_device(index)
            log.info("this job trains on GPU %s (cuda:%d), which no other job of the sweep uses",
                     physical, index)
            yield
            return  # closing the file lets the claim go
    raise TrainingError(
        f"every GPU of this machine ({count}) is in use by another job of this sweep: run at "
        f"most {count} jobs at once (hydra.launcher.n_jobs={count}), or set device=cpu")


@contextmanager
def own_process_group() -> Iterator[None]:
    """A submitit job of several tasks (hydra.launcher.tasks_per_node=N: one per GPU) trains
    one DDP model: its tasks join one process group from the scheduler's variables
    (training.distributed.task_environment) and leave it at the end, as scripts/train.py's
    main() does for torchrun. Tasks other than rank 0 log warnings only, and not to train.log."""
    from seq2seq.training.distributed import init_distributed, shutdown_distributed

    if not in_own_process():
        yield
        return
    context = init_distributed()
    if not context.is_main:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
    finished = False
    try:
        yield
        finished = True
    finally:
        shutdown_distributed(wait_for_peers=finished)


def in_own_process() -> bool:
    """Whether this job runs in a process of its own that submitit started (locally or under
    SLURM), rather than in the sweep's process or a joblib worker."""
    return "SUBMITIT_EXECUTOR" in os.environ


def requeue_after_preemption(signum: int) -> None:
    """After the trainer saved last.pt on submitit's preemption signal (USR2: SLURM sends it
    signal_delay_s before the time limit, and where a preemption warns first), hand the signal
    to submitit's own handler, which the trainer's replaced while it trained: it resubmits the
    job (the requeued job continues from its last.pt: `settled`) and exits; on SLURM it is
    `scontrol requeue`, on this machine the exit code that makes the local controller start the
    job again. Nothing for a job that submitit did not start."""
    if not in_own_process():
        return
    from submitit.core.job_environment import JobEnvironment

    handler = signal.getsignal(signum)
    if signum == JobEnvironment._usr_sig() and callable(handler):
        print(f"requeuing: {signal.Signals(signum).name} is submitit's preemption signal",
              file=sys.stderr)
        handler(signum, None)
