"""Multi-process training under torchrun: joining the job, and the few collectives that keep every
rank in step.

torchrun starts one process per GPU (or per CPU slot) on each node and tells each one its place
through environment variables: RANK (0 .. WORLD_SIZE-1 across all nodes), LOCAL_RANK (its GPU on
this node), WORLD_SIZE, MASTER_ADDR and MASTER_PORT. A job of several tasks that SLURM's srun or
submitit started (hydra/launcher=slurm with tasks_per_node=N) gets the same variables from
SLURM's (or submitit's) own: `task_environment`. Gradients are averaged by
DistributedDataParallel (Li et al. 2020, "PyTorch Distributed", VLDB); everything else the ranks
must agree on goes through the helpers of `Distributed`. Every helper returns its input unchanged
for a single process, so the trainer reads the same with one process or many.

Collectives block until every rank joins. A rank that decides on its own to stop, evaluate or save
while the others go on leaves them waiting until the timeout, so decisions are either made on
identical inputs or taken by rank 0 and broadcast.
"""

from __future__ import annotations

import gc
import json
import os
import zlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from seq2seq.errors import TrainingError
from seq2seq.runtime import StopRequest

T = TypeVar("T")

TIMEOUT_ENV = "SEQ2SEQ_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 60.0
TRACE_ENV = "SEQ2SEQ_TRACE_BATCHES"


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job; the default is a single process."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes every file of the run."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """`cuda` becomes this process's own GPU, cuda:LOCAL_RANK; the CPU stays the CPU."""
        if not self.enabled or device.type == "cpu":
            return device
        if device.type != "cuda":
            raise TrainingError(f"multi-process training runs on CUDA or the CPU, not {device}: "
                                "set device=cuda or device=cpu")
        if self.local_rank >= torch.cuda.device_count():
            raise TrainingError(
                f"local rank {self.local_rank} has no GPU: this node has "
                f"{torch.cuda.device_count()}; start at most that many processes per node "
                "(torchrun --nproc_per_node)")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum_over_ranks(self, value: int) -> int:
        """The sum of an integer over all ranks (on the CPU, so no GPU sync)."""
        if not self.enabled:
            return value
        total = torch.tensor([value], dtype=torch.long)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return int(total)

    def max_over_ranks(self, values: list[int]) -> list[int]:
        """The element-wise maximum of integers over all ranks: a flag raised anywhere."""
        if not self.enabled:
            return values
        result = torch.tensor(values, dtype=torch.long)
        dist.all_reduce(result, op=dist.ReduceOp.MAX)
        return result.tolist()

    def mean_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over all ranks, on its own device."""
        if not self.enabled:
            return tensor
        result = tensor.clone()
        dist.all_reduce(result, op=dist.ReduceOp.SUM)
        return result / self.world_size

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank (any picklable object; the others pass a placeholder)."""
        if not self.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def init_distributed() -> Distributed:
    """Join the torchrun job described by the environment; a plain process stays alone.

    The backend is NCCL for CUDA tensors and gloo for CPU tensors: with a GPU the process group
    holds both, so the small control messages (flags, token counts, objects) travel on the CPU
    and do not wait for the GPU. Idempotent: a second call returns the same answer.
    """
    os.environ.update(task_environment())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 and not dist.is_initialized():
        return Distributed()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            backend = "cpu:gloo,cuda:nccl"
            if local_rank < torch.cuda.device_count():
                torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes()))
    return Distributed(rank=dist.get_rank(), local_rank=local_rank,
                       world_size=dist.get_world_size())


def task_environment() -> dict[str, str]:
    """torchrun's variables for a task of a job that SLURM's srun or submitit (its local
    executor too) started with several tasks, read from the scheduler's variables
    (SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, SLURM_JOB_NODELIST, SLURM_JOB_ID) through
    submitit's reader of them; {} where torchrun set them already, or for a job of one task.
    MASTER_PORT: yours, else one derived from the job id, the same in every task."""
    if "WORLD_SIZE" in os.environ:
        return {}
    if "SUBMITIT_EXECUTOR" in os.environ:
        from submitit import JobEnvironment

        job = JobEnvironment()
    elif int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
        # a task of `srun --ntasks=N` (SLURM_STEP_*): not a batch script of an allocation of
        # N tasks that runs python itself, once, where SLURM_NTASKS=N too
        try:
            from submitit.slurm.slurm import SlurmJobEnvironment
        except ImportError:
            raise TrainingError("a SLURM job of several tasks trains one DDP model, which needs "
                                'submitit: pip install "seq2seq[cluster]"') from None
        job = SlurmJobEnvironment()
    else:
        return {}
    if job.num_tasks == 1:
        return {}
    port = os.environ.get("MASTER_PORT") or str(PORTS[0] + zlib.crc32(job.job_id.encode())
                                                 % (PORTS[1] - PORTS[0]))
    return {"RANK": str(job.global_rank), "LOCAL_RANK": str(job.local_rank),
            "WORLD_SIZE": str(job.num_tasks), "MASTER_PORT": port,
            # one node: the loopback interface, whatever the host's name resolves to
            "MASTER_ADDR": "127.0.0.1" if job.num_nodes == 1 else job.hostnames[0]}


PORTS = (20000, 60000)  # where a job's MASTER_PORT is drawn from, as submitit's helper draws it


def timeout_minutes() -> float:
    """How long a rank waits in a collective, e.g. while rank 0 evaluates (default 60 min)."""
    value = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_MINUTES))
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if minutes <= 0:
        raise TrainingError(f"{TIMEOUT_ENV}={value!r} is invalid: expected minutes > 0")
    return minutes


def shutdown_distributed(wait_for_peers: bool = False) -> None:
    """Leave the job. After a normal finish, first wait for every rank to get here: a rank that
    tears gloo down while a peer still uses its connections can abort at exit ("terminate called
    without an active exception", about 1 run in 8 of the 2-process test). After an error, leave
    at once: a dead peer would never arrive.

    A DistributedDataParallel wrapper sits in a reference cycle, so its reducer keeps the process
    group alive after the trainer is gone, until the cycle collector runs: perhaps only while the
    interpreter shuts down, when gloo's threads abort the same way (1 run in ~80 with the
    barrier). Collecting first lets the group die here, while the interpreter is whole."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()


def batch_trace_path(context: Distributed) -> Path | None:
    """Where this rank records the example indices of every batch it trains on, if anywhere.

    Set SEQ2SEQ_TRACE_BATCHES=DIR to get DIR/rank{R}.jsonl, one line per batch; the tests use it
    to check that the ranks of a real torchrun job split each epoch between them.
    """
    directory = os.environ.get(TRACE_ENV)
    if not directory:
        return None
    return Path(directory) / f"rank{context.rank}.jsonl"


def trace_batch(path: Path, epoch: int, indices: list[int]) -> None:
    """Append one batch's example indices to this rank's trace (see batch_trace_path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as trace:
        trace.write(json.dumps({"epoch": epoch, "indices": indices}) + "\n")


def agree_on_stopping(context: Distributed, request: StopRequest, out_of_time: bool) -> bool:
    """Share a pending stop signal and whether the time budget is spent among all ranks.

    Ranks receive a signal, or cross the deadline, at slightly different steps; a rank that
    stopped alone would leave the others waiting for it in the next all-reduce. Returns
    whether the time is up; a signal seen by any rank becomes this rank's stop request.
    """
    signum, out_of_time = context.max_over_ranks([request.signum or 0, int(out_of_time)])
    if signum:
        request.signum = signum
    return bool(out_of_time)
