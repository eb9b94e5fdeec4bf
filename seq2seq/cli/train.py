"""`python scripts/train.py [overrides]`: train a model, then test its best checkpoint.

Every setting is a Hydra override (see conf/); `-m` runs sweeps. A bad key or value, or a model
too large for this machine's memory, stops a run (a sweep: in any of its jobs) at once with one
line on stderr and exit code 1, before any data work; so do errors in the data. Ctrl-C or SIGTERM
save last.pt first. Why a run failed goes into its train.log too (for anything but a user error,
with the traceback). In a sweep, a job that fails for any reason is one line and the rest still
run; the sweep ends with `error: N of M jobs failed (see their train.log): JOB: ERROR; ...`.

`torchrun --nproc_per_node=N scripts/train.py [overrides]` trains with DistributedDataParallel:
the processes join the job before Hydra starts, so rank 0 can fix the run dir for all of them.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Sequence
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from seq2seq.cli import launcher_job
from seq2seq.cli.common import (
    CONFIG_NAME,
    CONFIG_PATH,
    check_overrides,
    choose_omp_wait_policy,
    plain_overrides,
    shortened,
    sweep_jobs,
    user_errors,
)
from seq2seq.config import override_key, register_configs, to_object
from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.training.footprint import check_fits_in_memory, machine_memory

if TYPE_CHECKING:  # torch is imported in main(), after the OpenMP wait policy is set
    from seq2seq.training.distributed import Distributed

log = logging.getLogger("seq2seq.train")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


@hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base="1.3")
def train(cfg: DictConfig) -> float | None:
    """Returns the final model's val BLEU, which Hydra's search sweepers (Optuna's) maximise;
    None for a sweep job that failed, which such a sweeper counts as a failed trial (NaN broke
    Optuna's)."""
    from seq2seq.training.state import AlreadyFinished, Interrupted  # after Hydra: fast --help

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode is RunMode.MULTIRUN
    log.info("%s", choose_omp_wait_policy())  # the choice main() made
    try:
        with user_errors():
            try:
                results = fit(cfg, run_dir)
            except (AlreadyFinished, Interrupted):
                raise  # how a run ends, not a failure
            except Exception as error:
                log_failure(error)  # the terminal shows it once, below
                raise
    except SystemExit:  # a user error, which user_errors printed
        if in_sweep:
            return None  # one failed job must not cancel the rest of a sweep
        RunDirGuard.remove_what_the_run_made(run_dir)
        raise
    except AlreadyFinished as done:
        log_to_file(logging.INFO, str(done))  # the terminal shows it once, below
        print(done, file=sys.stderr)
        return done.best_bleu
    except Interrupted as stop:
        log_to_file(logging.WARNING, str(stop))
        print(f"stopped: {stop}", file=sys.stderr)
        if in_sweep:
            launcher_job.requeue_after_preemption(stop.signum)  # exits if it requeues
            if launcher_job.in_own_process():
                # submitit reads a job that exits without a result as a crash, and the sweep
                # would end in its traceback: the job ends unfinished, as a failed one does
                log_to_file(logging.ERROR, f"stopped: {stop}")
                return None
        sys.exit(128 + stop.signum)
    except Exception as error:  # not the user's: a bug, or the machine's (no threads, no memory)
        if not in_sweep:
            raise
        print(f"error: {failure_line(error)} (the traceback is in {run_dir / 'train.log'})",
              file=sys.stderr)
        return None  # nor must a job that ran out of threads or memory
    log.info("results in %s", run_dir / "results.json")
    return results["valid"]["bleu"]


def fit(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the run `cfg` describes and return its results. A sweep job first takes its share
    of the machine from the launcher that runs it (its threads, its own GPU, its tasks' process
    group) and continues its own last.pt if a launcher started it again."""
    from seq2seq.training.setup import build_trainer

    config = to_object(cfg)
    hydra_config = HydraConfig.get()
    if hydra_config.mode is not RunMode.MULTIRUN:
        return build_trainer(config, run_dir).fit()
    config = launcher_job.settled(config, hydra_config, run_dir)
    with launcher_job.own_process_group(), \
            launcher_job.own_gpu(config, hydra_config.launcher, Path(hydra_config.sweep.dir)):
        return build_trainer(config, run_dir).fit()


def log_failure(error: Exception) -> None:
    """Write why a run failed into its train.log, where report.py and SweepOutcome read it: a
    user error's message; anything else's `failure_line`, then its traceback."""
    if isinstance(error, Seq2SeqError):
        log_to_file(logging.ERROR, str(error))
    else:
        log_to_file(logging.ERROR, failure_line(error), (type(error), error, error.__traceback__))


def failure_line(error: BaseException) -> str:
    """The traceback's last line, e.g. `RuntimeError: Resource temporarily unavailable` (its
    first line, when the message has several)."""
    return "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[0]


def log_to_file(level: int, message: str, exc_info: ExcInfo | None = None) -> None:
    """A record for train.log only (report.py reads why a job failed from there)."""
    record = log.makeRecord(log.name, level, __file__, 0, message, None, exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class RunDirGuard(Callback):
    """A Hydra callback (config.yaml, hydra.callbacks) that notes, before Hydra writes a single
    run's folder, which of what Hydra writes there already exists: a run that fails before it
    saves anything then removes only what it made (a user's folder, a resumed run's .hydra/ and
    train.log stay)."""

    existed: ClassVar[frozenset[Path]] = frozenset()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the config Hydra makes the run dir from: ${now:...} resolves to the same moment
        files, folders = RunDirGuard._hydra_outputs(Path(config.hydra.run.dir))
        RunDirGuard.existed = frozenset(path for path in files + folders if path.exists())

    @staticmethod
    def remove_what_the_run_made(run_dir: Path) -> None:
        """Remove what Hydra wrote for a run that failed before it saved anything (.hydra/ and
        train.log) and had not been there before, then the folders left empty that it made, up
        to the current directory: a failed first try leaves no empty outputs/DATE/TIME/."""
        if (run_dir / "checkpoints").exists():
            return
        files, folders = RunDirGuard._hydra_outputs(run_dir)
        for path in files:
            if path not in RunDirGuard.existed:
                path.unlink(missing_ok=True)
        for folder in folders:
            if folder in RunDirGuard.existed:
                break
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break

    @staticmethod
    def _hydra_outputs(run_dir: Path) -> tuple[list[Path], list[Path]]:
        """The files Hydra writes for a run, and its folders from the deepest up to the current
        directory (e.g. outputs/DATE/TIME/.hydra, outputs/DATE/TIME, outputs/DATE, outputs)."""
        run_dir = run_dir.resolve()
        cwd = Path.cwd().resolve()
        files = [run_dir / ".hydra" / name for name in HYDRA_FILES] + [run_dir / "train.log"]
        parents = [path for path in run_dir.parents if cwd in path.parents]
        return files, [run_dir / ".hydra", run_dir, *parents]


HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")  # in .hydra/


def torchrun_overrides(context: Distributed, args: Sequence[str]) -> list[str]:
    """Extra Hydra overrides that make the ranks of one torchrun job share one run dir.

    Hydra's default run dir comes from `${now:...}`, which each process reads from its own clock,
    so two ranks may disagree by a second and write two dirs. Rank 0's clock decides for all
    (the dir patterns of config.yaml with `now` frozen), unless hydra.run.dir (or, for `-m`,
    hydra.sweep.dir) is given. Ranks other than 0 write no .hydra/ and no train.log, and log only
    warnings, to stderr.
    """
    if not context.enabled:
        return []
    moment = context.broadcast(datetime.now() if context.is_main else None)
    config_yaml = files("seq2seq.conf").joinpath(f"{CONFIG_NAME}.yaml").read_text("utf-8")
    defaults = OmegaConf.to_container(OmegaConf.create(config_yaml))["hydra"]
    overrides = []
    for kind in ("run", "sweep"):
        if not any(arg.startswith(f"hydra.{kind}.dir=") for arg in args):
            frozen = re.sub(r"\$\{now:([^}]*)\}", lambda now: moment.strftime(now.group(1)),
                            defaults[kind]["dir"])
            overrides.append(f"hydra.{kind}.dir={frozen}")
    if not context.is_main:
        given = {override_key(arg) for arg in args}
        overrides += [o for o in ("hydra.output_subdir=null", "hydra/job_logging=none",
                                  "hydra/hydra_logging=none") if override_key(o) not in given]
    return overrides


def resume_in_place(args: Sequence[str]) -> list[str]:
    """`train.resume=RUN` continues RUN where it is: RUN's own overrides (from its
    .hydra/overrides.yaml) come first, so `train.resume=RUN` alone is enough and keys given on
    the command line win, and the run dir is RUN unless hydra.run.dir says otherwise."""
    resumes = [arg.split("=", 1)[1] for arg in args if arg.startswith("train.resume=")]
    if not resumes:
        return list(args)
    target = Path(resumes[-1])
    run_dir = target if target.is_dir() else target.parent.parent  # RUN/checkpoints/last.pt
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return list(args)
    given = {override_key(arg) for arg in args}
    try:
        saved_overrides = [str(o) for o in OmegaConf.to_container(OmegaConf.load(saved))]
    except Exception as error:  # noqa: BLE001 - not YAML, not a list
        raise ConfigError(f"{saved} is unreadable ({str(error).splitlines()[0]}): pass the "
                          "run's overrides yourself with train.resume") from None
    previous = [o for o in saved_overrides if override_key(o) not in given | {"train.resume"}]
    # in place, the run's .hydra/ keeps the settings it was started with: a resume that is
    # refused, or that changes a setting, does not rewrite them
    place = [] if "hydra.run.dir" in given else [f"hydra.run.dir={run_dir}",
                                                  "hydra.output_subdir=null"]
    return [*previous, *args, *place]


def check_run(overrides: Sequence[str], job: int | None = None) -> None:
    """What a run's overrides (with `job`, that job of a sweep's) must pass before Hydra starts:
    check_overrides, and a model whose training fits in this machine's memory."""
    check_fits_in_memory(check_overrides(overrides, job), machine_memory())


def check_sweep(args: Sequence[str]) -> None:
    """Check every job of `-m ARGS` as a single run is checked, before Hydra starts: a bad key is
    one line (Hydra's is 8), and a bad value stops the sweep before any job ran, not as one
    failed job among many found out hours later. The error names the job by what it sweeps."""
    jobs = sweep_jobs(args)
    shared = set.intersection(*(set(job) for job in jobs))
    for number, job in enumerate(jobs):
        try:
            check_run(job, number)
        except Seq2SeqError as error:
            # the first job by what it sweeps, the others by how they differ from it
            named = job if number == 0 else [o for o in job if o not in jobs[0]]
            swept = " ".join(shortened(override) for override in named if override not in shared)
            raise type(error)(f"sweep job {number} ({swept or 'its only job'}): {error}") from None


MULTIRUN_FLAGS = ("-m", "--multirun")
SHOW_FLAGS = ("-c", "--cfg", "-i", "--info")  # Hydra's flags that print and run nothing


def main() -> None:
    register_configs()
    if any(arg in SHOW_FLAGS or arg.startswith("--cfg=") for arg in sys.argv[1:]):
        # `-m ... --cfg hydra` shows what a sweep would run with; Hydra takes one of the two
        sys.argv[1:] = [arg for arg in sys.argv[1:] if arg not in MULTIRUN_FLAGS]
    multirun = any(arg in MULTIRUN_FLAGS for arg in sys.argv[1:])
    if not multirun:
        with user_errors():
            sys.argv[1:] = resume_in_place(sys.argv[1:])
    # a bad config fails here, in one line; other Hydra flags (--help, --cfg) go to Hydra
    overrides = plain_overrides([arg for arg in sys.argv[1:] if arg not in MULTIRUN_FLAGS])
    with user_errors():
        if overrides is not None and multirun:
            check_sweep(overrides)
        elif overrides is not None:
            check_run(overrides)
    choose_omp_wait_policy()
    from seq2seq.training.distributed import init_distributed, shutdown_distributed  # imports torch

    with user_errors():
        context = init_distributed()  # under torchrun: join the job before Hydra picks a run dir
    if not context.is_main:
        logging.basicConfig(
            level=logging.WARNING, stream=sys.stderr,
            format=f"[%(asctime)s][rank {context.rank}][%(name)s][%(levelname)s] - %(message)s")
    sys.argv += torchrun_overrides(context, sys.argv[1:])
    finished = False
    try:
        train()
        finished = True
    finally:
        shutdown_distributed(wait_for_peers=finished)


if __name__ == "__main__":
    main()
