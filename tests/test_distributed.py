"""Multi-process training: torchrun end to end on the CPU (gloo), DDP gradients against a single
process, and an interrupted 2-process run resumed exactly.

The in-process tests start their workers with torch.multiprocessing.spawn on 127.0.0.1 and a free
port; workers write what they saw to files that the test then reads.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from commands import command_env
from ddp import DISTRIBUTED_RUN
from server_process import free_port
from torch.nn.parallel import DistributedDataParallel

from seq2seq.checkpoint import load_checkpoint
from seq2seq.data.batching import TokenBudgetSampler, collate
from seq2seq.data.prepare import prepare_data
from seq2seq.training.distributed import (
    TIMEOUT_ENV,
    TRACE_ENV,
    Distributed,
    init_distributed,
    shutdown_distributed,
)
from seq2seq.training.setup import build_trainer, prepare_data_on_all_ranks
from seq2seq.training.state import Interrupted

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# a rank stuck in a collective fails the test in 2 minutes instead of hanging it for an hour
TEST_TIMEOUT = {TIMEOUT_ENV: "2"}


def with_train(cfg, **changes):
    return replace(cfg, train=replace(cfg.train, **changes))


@pytest.fixture(scope="module")
def overrides(tiny_run) -> list[str]:
    return [*tiny_run, *DISTRIBUTED_RUN]


@pytest.fixture(scope="module")
def tiny_setup(compose, overrides):
    """The tiny config and its data; preparing it here caches the tokenizer for the workers."""
    cfg = compose(overrides)
    return cfg, prepare_data(cfg.data, cfg.train.batch_tokens)


def join_job(rank: int, world_size: int, port: int) -> None:
    """The environment torchrun would give this worker, on the loopback interface only."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), **TEST_TIMEOUT)
    torch.set_num_threads(1)


def spawn(worker, *args) -> None:
    """`worker(rank, port, *args)` in two processes of their own, forked from a server that
    imported this module (torch, seq2seq) once per test worker: a fresh interpreter per rank
    spent ~5 s of a busy 2-core machine on those imports. Not torch._dynamo, which a process's
    first DistributedDataParallel imports: preloaded, it left no reference cycle around the
    wrapper, and test_shutdown_frees_a_dropped_ddp_wrapper... must meet the cycle a torchrun
    rank meets."""
    mp.set_forkserver_preload([__name__])
    mp.start_processes(worker, args=(free_port(), *args), nprocs=2, join=True,
                       start_method="forkserver")


# ---- torchrun, as a user runs it ---------------------------------------------------------------

def test_torchrun_two_cpu_processes_share_one_run_and_split_every_epoch(tiny_setup, overrides,
                                                                       tmp_path):
    cfg, data = tiny_setup
    trace = tmp_path / "trace"
    env = command_env(**{TRACE_ENV: str(trace), "OMP_NUM_THREADS": "1", **TEST_TIMEOUT})
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "scripts" / "train.py"), *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # one run dir, from rank 0's clock (no hydra.run.dir given), holding one copy of everything
    run_dirs = [path.parent for path in tmp_path.glob("outputs/*/*/results.json")]
    assert len(run_dirs) == 1 and len(list(tmp_path.glob("outputs/*/*"))) == 1
    run_dir = run_dirs[0]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    assert len(list(tmp_path.rglob("results.json"))) == 1
    assert len(list(tmp_path.rglob("train.log"))) == 1
    results = json.loads((run_dir / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 20
    last = load_checkpoint(run_dir, "last.pt")
    assert last["world_size"] == 2 and len(last["rng_per_rank"]) == 2
    assert done.stdout.count("results in") == 1  # rank 1 logs warnings only

    # each rank trained exactly its share of the global batch order: batches r, r + 2, ...
    traced = {rank: [json.loads(line) for line in
                     (trace / f"rank{rank}.jsonl").read_text().splitlines()]
              for rank in (0, 1)}
    sampler = TokenBudgetSampler(data.train.src_lengths, data.train.tgt_lengths,
                                 cfg.train.batch_tokens, shuffle=True, seed=cfg.seed)
    epochs = sorted({entry["epoch"] for entry in traced[0]})
    assert epochs == [0, 1]  # 20 steps of 10 batches per rank: two whole epochs
    for epoch in epochs:
        sampler.set_epoch(epoch)
        global_batches = list(sampler)
        assert len(global_batches) % 2 == 0  # so no batch sits out
        seen = {rank: [e["indices"] for e in traced[rank] if e["epoch"] == epoch]
                for rank in (0, 1)}
        for rank in (0, 1):
            assert seen[rank] == global_batches[rank::2]
        first = {i for batch in seen[0] for i in batch}
        second = {i for batch in seen[1] for i in batch}
        assert not first & second
        assert first | second == set(range(len(data.train)))


# ---- leaving the job ---------------------------------------------------------------------------

def ddp_left_behind(rank: int, port: int, out: Path) -> None:
    """Train one DDP step and drop the wrapper, as the trainer does at its end, then leave."""
    join_job(rank, 2, port)
    gc.disable()  # no automatic collection between the drop and the shutdown
    try:
        init_distributed()
        model = DistributedDataParallel(torch.nn.Linear(3, 3))
        model(torch.randn(2, 3)).sum().backward()
        del model
        left = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
        shutdown_distributed(wait_for_peers=True)
        after = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
        (out / f"rank{rank}.json").write_text(json.dumps({"left": left, "after": after}))
    finally:
        gc.enable()


def test_shutdown_frees_a_dropped_ddp_wrapper_before_it_destroys_the_group(tmp_path):
    """A wrapper's reducer holds the process group; freed only at interpreter exit, gloo's threads
    can abort the process ("terminate called without an active exception")."""
    spawn(ddp_left_behind, tmp_path)
    for rank in (0, 1):
        counts = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert counts == {"left": 1, "after": 0}  # a reference cycle kept it; shutdown freed it


# ---- gradients: 2-process DDP on A and B equals one process on A + B ------------------------

def gradient_worker(rank: int, port: int, cfg, batches: list[list[int]], out: Path) -> None:
    join_job(rank, 2, port)
    try:
        trainer = build_trainer(cfg, out / f"run{rank}")
        assert trainer.dist == Distributed(rank=rank, local_rank=rank, world_size=2)
        batch = collate([trainer.data.train[i] for i in batches[rank]])
        trainer.train_step(batch)
        torch.save({"grads": {n: p.grad for n, p in trainer.model.named_parameters()},
                    "params": {n: p.detach() for n, p in trainer.model.named_parameters()},
                    "tokens": trainer.state.train_tokens},
                   out / f"rank{rank}.pt")
    finally:
        shutdown_distributed()


def test_ddp_step_equals_single_process_step_on_the_union(tiny_setup, tmp_path):
    cfg, data = tiny_setup
    cfg = replace(cfg, model=replace(cfg.model, embedding_dropout=0.0, output_dropout=0.0))
    sampler = TokenBudgetSampler(data.train.src_lengths, data.train.tgt_lengths,
                                 cfg.train.batch_tokens, shuffle=True, seed=cfg.seed)
    full, other = list(sampler)[:2]
    batches = [full, other[:3]]  # very different token counts: a per-rank mean would be wrong
    sizes = [collate([data.train[i] for i in b]).num_tgt_tokens for b in batches]
    assert sizes[0] > 3 * sizes[1]

    spawn(gradient_worker, cfg, batches, tmp_path)

    single = build_trainer(cfg, tmp_path / "single", data)
    single.train_step(collate([data.train[i] for i in batches[0] + batches[1]]))
    assert single.state.train_tokens == sum(sizes)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for saved in ranks:
        for name, param in single.model.named_parameters():
            torch.testing.assert_close(saved["grads"][name], param.grad, rtol=1e-5, atol=1e-5)
        assert saved["tokens"] == sum(sizes)  # tokens/s counts every rank's tokens
    for name, param in ranks[0]["params"].items():  # so both ranks made the same update
        assert torch.equal(param, ranks[1]["params"][name])


# ---- an interrupted 2-process run resumes exactly ----------------------------------------------

def resume_worker(rank: int, port: int, cfg, out: Path) -> None:
    """Train 12 steps; again, with SIGTERM reaching rank 1 alone at step 7; then resume that."""
    join_job(rank, 2, port)
    try:
        build_trainer(cfg, out / "full").fit()

        cut = build_trainer(cfg, out / "cut")
        real_step = cut.train_step

        def step_then_sigterm(batch):
            loss = real_step(batch)
            if rank == 1 and cut.state.step == 7:
                os.kill(os.getpid(), signal.SIGTERM)
            return loss

        cut.train_step = step_then_sigterm
        try:
            cut.fit()
        except Interrupted as stop:
            (out / f"stopped{rank}").write_text(f"{stop.signum} {cut.state.step}")

        build_trainer(with_train(cfg, resume=str(out / "cut")), out / "resumed").fit()
    finally:
        shutdown_distributed()


def test_a_signal_on_one_rank_stops_all_and_resume_matches_the_uninterrupted_run(tiny_setup,
                                                                                  tmp_path,
                                                                                  caplog):
    cfg, data = tiny_setup
    cfg = with_train(cfg, max_steps=12, eval_every=6)  # dropout stays on: RNG states matter

    spawn(resume_worker, cfg, tmp_path)

    for rank in (0, 1):  # both ranks stopped together, after the same step
        assert (tmp_path / f"stopped{rank}").read_text() == f"{int(signal.SIGTERM)} 7"
    assert load_checkpoint(tmp_path / "cut", "last.pt")["state"]["step"] == 7
    full = load_checkpoint(tmp_path / "full", "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed", "last.pt")
    assert resumed["state"]["step"] == full["state"]["step"] == 12
    assert resumed["state"]["best_bleu"] == full["state"]["best_bleu"]
    for name, tensor in full["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0)
    for rank in (0, 1):  # and each rank's RNG ends where it would have
        assert torch.equal(resumed["rng_per_rank"][rank]["torch"],
                           full["rng_per_rank"][rank]["torch"])

    # one process continues the 2-process run after the 2 x 7 batches it trained this epoch
    with caplog.at_level(logging.WARNING):
        alone = build_trainer(with_train(cfg, resume=str(tmp_path / "cut")), tmp_path / "alone",
                              data)
    assert alone.state.step == 7 and alone.state.batch_in_epoch == 14
    assert any("resuming a run of 2 process(es) with 1" in r.message for r in caplog.records)


# ---- the encoded training set: rank 0 encodes and caches it, rank 1 maps it ------------------

def cache_worker(rank: int, port: int, cfg, out: Path) -> None:
    join_job(rank, 2, port)
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("seq2seq.data.prepare").addHandler(handler)
    logging.getLogger("seq2seq.data.prepare").setLevel(logging.INFO)
    try:
        data = prepare_data_on_all_ranks(cfg, init_distributed())
        (out / f"rank{rank}.json").write_text(json.dumps(
            {"encoded": any(m.startswith("encoded ") for m in messages),
             "mapped": isinstance(data.train.src_tokens, np.memmap), "pairs": len(data.train),
             "first": data.train[0][1].tolist()}))
    finally:
        shutdown_distributed()


def test_rank_0_encodes_the_training_set_and_rank_1_maps_its_cache(tiny_setup, tmp_path):
    cfg, _ = tiny_setup
    cfg = replace(cfg, data=replace(cfg.data, root=str(tmp_path / "root")))  # nothing cached
    spawn(cache_worker, cfg, tmp_path)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["encoded"] for r in ranks] == [True, False]
    assert [r["mapped"] for r in ranks] == [True, True]  # rank 0 too trains on the map
    assert ranks[0]["pairs"] == ranks[1]["pairs"] and ranks[0]["first"] == ranks[1]["first"]
