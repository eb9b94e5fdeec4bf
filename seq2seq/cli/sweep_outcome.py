"""How a sweep ends, whichever launcher ran its jobs: a line that names each failed job with its
error, and exit code 1.

Hydra calls `on_job_end` in the process that ran the job (Hydra's basic launcher: the sweep's
own; joblib: a worker; submitit: a process of its own, on another node under SLURM) and
`on_multirun_end` in the sweep's process, so each job leaves its outcome as a small file in the
sweep dir (`.jobs/NUM.json`) for the end of the sweep to read (and remove).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from seq2seq.analysis.run_dir import last_error
from seq2seq.files import atomic_write_text

OUTCOMES = ".jobs"  # in the sweep dir


class SweepOutcome(Callback):
    """A Hydra callback (config.yaml, hydra.callbacks). Jobs after a failed one still run: one
    job's failure (in its data, say, or a machine short of threads) must not cost the rest of
    the comparison. (A bad setting gets no job started: `check_sweep` refuses the sweep first.)
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        shutil.rmtree(outcomes_dir(config), ignore_errors=True)  # an earlier sweep's, if any

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode is not RunMode.MULTIRUN:  # Hydra calls this for a single run too
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        failed = job_return.status is not JobStatus.COMPLETED
        error = None
        if failed or job_return.return_value is None:  # train() returns None for a failure
            error = last_error(job_dir / "train.log") or ""
        folder = outcomes_dir(config)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{config.hydra.job.num}.json",
                          json.dumps({"job": job_dir.name, "error": error}))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = read_outcomes(outcomes_dir(config))
        shutil.rmtree(outcomes_dir(config), ignore_errors=True)  # read once, here
        failed = [f"{job['job']}: {job['error']}" if job["error"] else job["job"]
                  for job in jobs if job["error"] is not None]
        if failed:
            print(f"error: {len(failed)} of {len(jobs)} jobs failed (see their train.log): "
                  f"{'; '.join(failed)}", file=sys.stderr)
            sys.exit(1)


def outcomes_dir(config: DictConfig) -> Path:
    return Path(config.hydra.sweep.dir) / OUTCOMES


def read_outcomes(folder: Path) -> list[dict[str, Any]]:
    """The jobs' outcomes in job order: {"job": its folder's name, "error": None when it
    succeeded, else the error its train.log ends on ("" when it has none)}."""
    files = sorted(folder.glob("*.json"), key=lambda file: int(file.stem)) \
        if folder.is_dir() else []
    return [json.loads(file.read_text(encoding="utf-8")) for file in files]
