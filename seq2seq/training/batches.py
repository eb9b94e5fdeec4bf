"""The training batches of an epoch: token-budget batches that every rank builds alike and takes
its share of, and (with subword sampling) each epoch's own segmentation of the training pairs."""

from __future__ import annotations

import logging
import time

from seq2seq.config import Config
from seq2seq.data.batching import PairDataset, TokenBudgetSampler
from seq2seq.data.prepare import PreparedData, sampled_train
from seq2seq.training.distributed import Distributed

log = logging.getLogger(__name__)


def training_sampler(train: PairDataset, cfg: Config, dist: Distributed) -> TokenBudgetSampler:
    """Token-budget batches of `train`, the same list on every rank, each taking its share."""
    return TokenBudgetSampler(train.src_lengths, train.tgt_lengths, cfg.train.batch_tokens,
                              shuffle=True, seed=cfg.seed, rank=dist.rank,
                              world_size=dist.world_size)


def resampled(data: PreparedData, cfg: Config, dist: Distributed, epoch: int
              ) -> tuple[PairDataset, TokenBudgetSampler]:
    """Subword regularization: this epoch's sampled segmentation of the training pairs (the
    same for the same seed and epoch, so resume stays exact), and batches for its lengths."""
    started = time.perf_counter()
    train = sampled_train(data, cfg.data, cfg.seed, epoch)
    log.info("epoch %d: sampled the segmentation of %d training pairs in %.1fs",
             epoch + 1, len(train), time.perf_counter() - started)
    return train, training_sampler(train, cfg, dist)
