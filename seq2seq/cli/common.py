"""What every command shares: the error wrapper, logging to stderr, the Hydra config location and
its fail-fast check, and the options and loading of a translator.

Nothing here imports torch at module level: `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from seq2seq.config import (
    BEAM_SIZE,
    CPU_THREADS,
    DEFAULT_BATCH_SIZE,
    LENGTH_PENALTY,
    MAX_LEN_RATIO,
    QUANTIZATIONS,
    THREADS_PER_CORE,
    Config,
    DataConfig,
    DeviceName,
    threads_refusal,
)
from seq2seq.cpu_load import BUSY_CORES, other_busy_cores
from seq2seq.errors import Seq2SeqError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from omegaconf import DictConfig, ListConfig

    from seq2seq.inference.translator import Translator

Number = TypeVar("Number", int, float)

# The Hydra configs ship inside the package, so an installed seq2seq finds them from any directory.
CONFIG_PATH = "pkg://seq2seq.conf"
CONFIG_NAME = "config"


def run_cli(command: Callable[[], None]) -> None:
    """Run an argparse command: warnings on stderr, user errors as one line (`user_errors`)."""
    choose_omp_wait_policy()
    setup_logging()
    signal.signal(signal.SIGTERM, _terminate)  # so that `finally` cleans up (temp files)
    with user_errors():
        try:
            command()
        except BrokenPipeError:  # e.g. `... | head -1`: the reader left, which is not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)


def _terminate(signum: int, frame: object) -> None:
    print("terminated", file=sys.stderr)
    sys.exit(128 + signum)


@contextmanager
def user_errors() -> Iterator[None]:
    """A user error ends the command as `error: MESSAGE` on stderr with exit code 1, Ctrl-C with
    130: never a traceback."""
    try:
        yield
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        raise
    except OSError as error:  # the machine's (a full disk, a vanished file): still one line
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        sys.exit(1)


# OMP_WAIT_POLICY decides how OpenMP threads wait between the many small ops of a GRU step.
# Measured on 2 cores (debug=smoke training, target tokens/s; beam-5 decoding of val):
#   idle CPU:         spin (default) 19-23k, GOMP_SPINCOUNT=10000 19k, PASSIVE 10-11k;
#                     decoding 3.4 s spinning, 5.2 s PASSIVE
#   one busy process: spin (default) 2-8k, GOMP_SPINCOUNT=10000 5k, PASSIVE 12-12.5k
# A spinning thread that lost its core stalls every op, a sleeping one pays a wake-up on an idle
# machine. So: PASSIVE when other work holds a core, else a short spin that is as fast as the
# default when idle and limits the loss if other work starts later.
SHORT_SPIN = "10000"
# How long the CPU is watched: 0.1 s (10 clock ticks a core) saw busy neighbours as idle, e.g.
# two sweeps started together, each at its quiet start-up. OpenMP reads the setting when torch
# is first imported, so it is chosen once, before that, for the whole run.
LOOK_SECONDS = 0.5


@functools.cache
def choose_omp_wait_policy() -> str:
    """Set how idle OpenMP threads wait, from how busy the CPU is now, once per process (later
    calls return the first answer); returns it in plain words, for the log.

    Only works before torch is first imported. A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
    """
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        if key in os.environ:
            return f"idle CPU threads wait as your {key}={os.environ[key]} says"
    busy = other_busy_cores(LOOK_SECONDS)
    use = f"other processes use {busy:.1f} of this machine's {os.cpu_count() or 1} cores"
    if busy >= BUSY_CORES:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return f"idle CPU threads will sleep, because {use}"
    os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return f"idle CPU threads will spin briefly, because {use}"


def setup_logging(level: int = logging.WARNING) -> None:
    """Library warnings (e.g. a truncated source) as `warning: ...` on stderr; a long-running
    command (the server) shows its `info: ...` too."""
    logger = logging.getLogger("seq2seq")
    logger.setLevel(logging.INFO)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler(level)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (tests replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        record.levelname = record.levelname.lower()
        print(self.format(record), file=sys.stderr, flush=True)


# ---- Hydra configs ---------------------------------------------------------------------------


def compose_config(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The composed config for `overrides`, as `python scripts/train.py OVERRIDES` would see it."""
    from hydra import compose

    with _hydra_initialized():
        check_group_choices(overrides)
        return compose(CONFIG_NAME, overrides=list(overrides),
                       return_hydra_config=return_hydra_config)


@contextmanager
def _hydra_initialized() -> Iterator[None]:
    """Hydra set up with the package's configs, as the train command's @hydra.main sets it up."""
    from hydra import initialize_config_module

    from seq2seq.config import register_configs

    register_configs()
    with initialize_config_module(config_module="seq2seq.conf", version_base="1.3"):
        yield


def check_group_choices(overrides: Sequence[str]) -> None:
    """A config group set to null (`attention=null`) is a ConfigError that lists the group's
    options: Hydra answers it with a 29-line ValueError traceback. Runs where Hydra is set up."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from seq2seq.errors import ConfigError

    loader = GlobalHydra.instance().config_loader()
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group  # without the + of an added group
        options = loader.get_group_options(key)
        if options and not override.is_delete() and override.value() is None:
            raise ConfigError(f"{key}=null is invalid: expected one of {', '.join(options)}")


@contextmanager
def hydra_errors() -> Iterator[None]:
    """Hydra's and OmegaConf's errors about overrides as one-line ConfigErrors: Hydra's own are
    several lines."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from seq2seq.config import one_line
    from seq2seq.errors import ConfigError

    try:
        yield
    except (HydraException, OmegaConfBaseException) as error:
        cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
        message = one_line(cause)
        if "Available options" in str(error):  # an unknown group option: list the others
            listed = str(error).split("Available options", 1)[1].split("Config search path")[0]
            options = [line.strip() for line in listed.splitlines()[1:] if line.strip()]
            message += f" (choose from {', '.join(options)})"
        raise ConfigError(message) from None


def check_overrides(overrides: Sequence[str], job: int | None = None) -> Config:
    """Compose and validate a single run's config (with `job`, that job of a sweep), and check
    that its run dir (a sweep job's folder) and data.root can be written; a bad key, value or
    path is one line (ConfigError, OutputError). Returns the validated config.

    Hydra reports a bad override in several lines and only once it runs the job; this check
    answers in well under a second, before the run dir, the corpus or the tokenizer.
    """
    from omegaconf import OmegaConf

    from seq2seq.cli.launcher_job import check_launcher
    from seq2seq.config import to_object
    from seq2seq.errors import ConfigError
    from seq2seq.files import check_output_dir

    number = [] if job is None else [f"hydra.job.num={job}"]  # what Hydra's launcher sets
    with hydra_errors():
        composed = compose_config([*overrides, *number], return_hydra_config=True)
        # (a run dir built from what only a running job knows is left for Hydra to make)
        run_dir, sweep_dir, subdir = (
            OmegaConf.select(composed, f"hydra.{key}", throw_on_resolution_failure=False)
            for key in ("run.dir", "sweep.dir", "sweep.subdir"))
        config = to_object(OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"]))
    # this machine's limit, checked here and not in TrainConfig, which also validates the
    # configs of checkpoints made on other machines
    threads = config.train.num_threads
    if threads is not None and (refusal := threads_refusal(threads)):
        raise ConfigError(f"train.num_threads {refusal}")
    if job is not None:
        check_launcher(composed.hydra.launcher)
        check_job_dir(sweep_dir, subdir, _as_given(composed.hydra.overrides.task))
        if sweep_dir is not None and subdir is not None:  # a sweep again into its folder
            check_run_dir(Path(sweep_dir) / subdir, config.train.resume, "hydra.sweep.dir")
    elif run_dir is not None:
        check_run_dir(Path(run_dir) if str(run_dir).strip() else None, config.train.resume)
    check_output_dir(config.data.root, "data.root")
    return config


def sweep_jobs(args: Sequence[str]) -> list[list[str]]:
    """The overrides of each job that `train.py -m ARGS` launches, as Hydra's basic sweeper makes
    them: the config's hydra.sweeper.params (an experiment's grid), then ARGS, in their cartesian
    product; ARGS' hydra.* overrides apply to every job. A search sweeper (Optuna's) picks its
    jobs as it goes: for it, the jobs at the edges of its search space (`search_space_edges`).
    A bad override is one line."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    with hydra_errors(), _hydra_initialized():
        check_group_choices(args)
        hydra = GlobalHydra.instance().hydra
        sweep = hydra.compose_config(CONFIG_NAME, list(args), run_mode=RunMode.MULTIRUN)
        params = [f"{key}={value}" for key, value in (sweep.hydra.sweeper.params or {}).items()]
        parser = OverridesParser.create(config_loader=hydra.config_loader)
        task = parser.parse_overrides([*params, *_as_given(sweep.hydra.overrides.task)])
        if sweep.hydra.sweeper._target_.endswith(".BasicSweeper"):
            (jobs,) = BasicSweeper.split_arguments(task, max_batch_size=None)
        else:
            jobs = search_space_edges(task)
    return [[*_as_given(sweep.hydra.overrides.hydra), *job] for job in jobs]


def search_space_edges(task: Sequence[Override]) -> list[list[str]]:
    """Jobs that between them take every edge of a search space once: each interval's low and
    high end, each choice's every option, one key at a time away from the first job (every key
    at its low end or first option). Enough to refuse a bad key or value before any trial."""
    from hydra.core.override_parser.types import IntervalSweep

    options: dict[str, list[str]] = {}  # by key: a later override of a key replaces its values
    for override in task:
        value = override.value()
        if isinstance(value, IntervalSweep):
            values = [value.start, value.end]
        elif override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        key = override.get_key_element()
        options[key] = [f"{key}={value}" for value in values]
    first = [values[0] for values in options.values()]
    return [first] + [first[:index] + [other] + first[index + 1:]
                      for index, values in enumerate(options.values()) for other in values[1:]]


def _as_given(overrides: ListConfig) -> list[str]:
    """Overrides as the command line gave them: `${...}` is for each job to resolve."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(overrides, resolve=False)


# bytes a file or folder name may have (ext4, XFS, btrfs, APFS; NTFS: 255 characters)
NAME_MAX = 255


def check_job_dir(sweep_dir: str | None, subdir: str | None, overrides: list[str]) -> None:
    """A sweep dir must be a folder that can be written, and a sweep job's folder name, which
    Hydra makes from the job's `overrides` (conf/config.yaml, hydra.sweep.subdir), short enough
    for a file system to hold."""
    from seq2seq.errors import OutputError
    from seq2seq.files import check_output_dir

    if sweep_dir is not None:
        check_output_dir(sweep_dir, "the sweep dir (hydra.sweep.dir)")
    for name in Path(subdir or "").parts:
        size = len(name.encode("utf-8"))
        if size > NAME_MAX:
            named = [override for override in overrides if override in name]
            longest = max(named, key=len) if named else None
            cause = "hydra.sweep.subdir" if longest is None else \
                f"{shortened(longest)} ({len(longest.encode('utf-8'))} bytes)"
            raise OutputError(
                f"the job folder name {shortened(name)} is {size} bytes, over the {NAME_MAX} a "
                f"folder name may have: {cause} makes it long; shorten it, or name the jobs by "
                "number with hydra.sweep.subdir=${hydra.job.num}")


def shortened(text: str, length: int = 40) -> str:
    """`text` cut to `length` characters for a one-line message."""
    return text if len(text) <= length else f"{text[:length]}..."


def check_run_dir(run_dir: Path | None, resume: str | None, key: str = "hydra.run.dir") -> None:
    """A run dir must be a writable folder, and not one that holds another run's checkpoints or
    results (which a new run would overwrite) unless this run resumes it. `key` is the setting
    that names the folder (hydra.sweep.dir for a sweep job's)."""
    from seq2seq.errors import OutputError
    from seq2seq.files import check_output_dir

    if run_dir is None:
        raise OutputError(f"the run dir ({key}) is empty: name a folder")
    check_output_dir(run_dir, f"the run dir ({key})")
    if resume:
        return
    held = sorted(path.relative_to(run_dir).as_posix()
                  for path in [*(run_dir / "checkpoints").glob("*.pt"), run_dir / "results.json"]
                  if path.is_file())
    if held:
        go_on = f"continue it with train.resume={run_dir}, or " \
            if (run_dir / "checkpoints" / "last.pt").is_file() else ""
        raise OutputError(f"{run_dir} already holds a run ({', '.join(held)}): {go_on}choose "
                          f"another {key}")


def plain_overrides(argv: Sequence[str]) -> list[str] | None:
    """The overrides of a single run, or None when argv holds Hydra flags (-m, --help, --cfg)."""
    if any(arg.startswith("-") for arg in argv):
        return None
    return list(argv)


# ---- translation options -----------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint, search and device options shared by translate and evaluate."""
    parser.add_argument("--checkpoint", action="append", required=True, metavar="PATH",
                        help="a checkpoint file, or a run dir (its final model: "
                             "checkpoints/best.pt, or averaged.pt where checkpoint averaging won "
                             "on val); "
                             "repeat it to decode with an ensemble of the models, which average "
                             "their log-probabilities at every step")
    search = parser.add_argument_group("search")
    search.add_argument("--beam", type=beam_size, default=5, metavar="N",
                        help=f"beam size in {BEAM_SIZE}; 1 is greedy search "
                             "(default: %(default)s)")
    search.add_argument("--length-penalty", type=length_penalty, metavar="A",
                        help="GNMT length penalty alpha, 0 ranks by log-probability "
                             "(default: the checkpoint's train.length_penalty)")
    search.add_argument("--max-len-ratio", type=length_ratio, metavar="R",
                        help="stop at R x source length + train.max_len_offset tokens "
                             "(default: the checkpoint's train.max_len_ratio)")
    search.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        metavar="N", help="sentences decoded together (default: %(default)s)")
    add_device_arguments(search)


def add_device_arguments(group: argparse._ActionsContainer) -> None:
    """Where and how the model runs: shared by translate, evaluate and serve."""
    group.add_argument("--device", choices=[device.value for device in DeviceName],
                       default=DeviceName.auto.value,
                       help="auto takes cuda, then mps, then cpu (default: %(default)s)")
    group.add_argument("--threads", type=cpu_threads, metavar="N",
                       help=f"CPU threads, at most {THREADS_PER_CORE} per core: "
                            f"{CPU_THREADS} here (default: torch's, one per core)")
    group.add_argument("--quantize", choices=QUANTIZATIONS,
                       help="int8: int8 Linear and GRU layers, faster on a CPU at a small BLEU "
                            "cost (CPU only; default: the trained fp32 weights)")


def refuse_same_files(parser: argparse.ArgumentParser, paths: dict[str, Path | None],
                      outputs: Sequence[str]) -> None:
    """A usage error when one of the `outputs` options names the same file as another option
    of `paths`: written atomically at the end, it would replace what the other one holds (the
    sentences of --input, the references of --ref)."""
    given = {option: path.resolve() for option, path in paths.items() if path is not None}
    for output in (option for option in outputs if option in given):
        for other, path in given.items():
            if other != output and path == given[output]:
                first, second = sorted((other, output), key=list(paths).index)
                parser.error(f"{first} and {second} name the same file ({paths[output]}); give "
                             f"{output} another")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def beam_size(text: str) -> int:
    return checked(text, int, BEAM_SIZE.refusal)


def cpu_threads(text: str) -> int:
    return checked(text, int, threads_refusal)


def length_penalty(text: str) -> float:
    return checked(text, float, LENGTH_PENALTY.refusal)


def length_ratio(text: str) -> float:
    return checked(text, float, MAX_LEN_RATIO.refusal)


def checked(text: str, parse: Callable[[str], Number], refusal: Callable[[Number], str | None]
            ) -> Number:
    """An argparse type: `text` parsed, or the option's one-line refusal (a Range's, say)."""
    value = parse(text)
    if why := refusal(value):
        raise argparse.ArgumentTypeError(why)
    return value


def load_translator(args: argparse.Namespace) -> Translator:
    """The checkpoint's model (or the checkpoints' ensemble) on its device, with `--threads`
    CPU threads."""
    from seq2seq.inference.translator import Translator
    from seq2seq.runtime import set_threads

    set_threads(args.threads)
    return Translator.from_checkpoint(args.checkpoint, args.device, quantize=args.quantize)


@contextmanager
def open_output(path: Path | None) -> Iterator[Callable[[list[str]], None]]:
    """A function that writes lines: to stdout, flushed at once; or atomically to `path`, which
    is replaced only when everything is written (an error leaves no half-written file)."""
    if path is None:
        def write_stdout(lines: list[str]) -> None:
            sys.stdout.buffer.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
            sys.stdout.buffer.flush()

        yield write_stdout
        return

    from seq2seq.errors import OutputError
    from seq2seq.files import atomic_writer, write_error

    with atomic_writer(path) as out:
        def write_file(lines: list[str]) -> None:
            try:
                out.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
            except OSError as error:
                raise OutputError(write_error(path, error)) from None

        yield write_file


def checkpoint_split(translator: Translator, split: str, data_source: str | None,
                     data_root: str | None) -> list[tuple[str, str]]:
    """The pairs of `split` of the corpus the translator's checkpoint was trained on, read where
    its config (or --data-source and --data-root) says the files are; a split held out of its
    training file is the one the checkpoint recorded (an older checkpoint kept no record)."""
    from seq2seq.data.prepare import read_split
    from seq2seq.errors import DataError

    cfg = with_data_location(translator.config.data, data_source, data_root)
    training_data = translator.training_data
    try:
        held_out = training_data["held_out"] if training_data else None
        return read_split(cfg, split, held_out)
    except DataError as error:
        moved = "not found" in str(error) or "not a directory" in str(error)
        if data_source is not None or not moved:
            raise
        raise DataError(f"{error} (the corpus as the checkpoint's config describes it; "
                        "--data-source DIR points at where its files are now)") from None


def with_data_location(cfg: DataConfig, source: str | None, root: str | None) -> DataConfig:
    """The checkpoint's data config, pointed at where the corpus is on this machine."""
    from seq2seq.config import CorpusKind

    if root is not None:
        cfg = replace(cfg, root=root)
    if source is None:
        return cfg
    if cfg.corpus is CorpusKind.multi30k:
        return replace(cfg, source=source)

    def moved(files):
        return replace(files, **{side: str(Path(source) / Path(path).name)
                                 for side in ("src", "tgt", "tsv")
                                 if (path := getattr(files, side)) is not None})

    return replace(cfg, train_files=moved(cfg.train_files), valid_files=moved(cfg.valid_files),
                   test_files=moved(cfg.test_files))
