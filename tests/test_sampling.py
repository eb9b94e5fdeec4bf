"""Subword regularization: each epoch's training pairs are segmented by sampling, the same for
the same (seed, epoch), and resume stays exact; validation and test keep the best segmentation."""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import ConfigError, SamplingConfig, SubwordModel
from seq2seq.data.prepare import prepare_data, sampled_train
from seq2seq.training.setup import build_trainer
from seq2seq.training.state import Interrupted


def with_sampling(cfg, model_type: SubwordModel = SubwordModel.unigram):
    tokenizer = dataclasses.replace(cfg.tokenizer, model_type=model_type,
                                    sampling=SamplingConfig(enabled=True))
    return dataclasses.replace(cfg, tokenizer=tokenizer)


def ids(dataset) -> list[tuple[list[int], list[int]]]:
    return [(src.tolist(), tgt.tolist()) for _, src, tgt in dataset]


@pytest.mark.parametrize("model_type", [SubwordModel.unigram, SubwordModel.bpe])
def test_each_epoch_samples_anew_and_the_same_seed_and_epoch_sample_alike(tiny_data_config,
                                                                         model_type):
    cfg = with_sampling(tiny_data_config, model_type)
    data = prepare_data(cfg)
    epoch0, again = sampled_train(data, cfg, seed=1, epoch=0), sampled_train(data, cfg, 1, 0)
    epoch1, other_seed = sampled_train(data, cfg, 1, 1), sampled_train(data, cfg, 2, 0)
    assert ids(epoch0) == ids(again)
    assert ids(epoch0) != ids(epoch1) and ids(epoch0) != ids(other_seed)
    assert ids(epoch0) != ids(data.train)  # not the best segmentation
    # a sampled segmentation spells the same sentence
    tokenizer = data.tokenizer
    sampled_text = tokenizer.decode_src([src for src, _ in ids(epoch0)[:50]])
    assert sampled_text == tokenizer.decode_src([src for src, _ in ids(data.train)[:50]])


def test_validation_and_test_keep_the_best_segmentation(tiny_data_config):
    plain = prepare_data(tiny_data_config)
    sampled = prepare_data(with_sampling(tiny_data_config))
    for split in ("valid", "test"):
        assert getattr(sampled, split).src_ids == getattr(plain, split).src_ids
        assert getattr(sampled, split).tgt_ids == getattr(plain, split).tgt_ids
    assert ids(sampled.train) == ids(plain.train)  # what is cached: the best segmentation


@pytest.mark.parametrize(("key", "value"), [("alpha", 0), ("nbest", 1), ("dropout", 1.0)])
def test_bad_sampling_settings_stop_at_once(compose, tiny_run, key, value):
    with pytest.raises(ConfigError, match=f"data.tokenizer.sampling.{key}={value}"):
        compose([*tiny_run, "data.tokenizer.sampling.enabled=true",
                 f"data.tokenizer.sampling.{key}={value}"])


def test_a_resumed_run_samples_what_the_uninterrupted_one_did(compose, tiny_run, tmp_path,
                                                              monkeypatch, caplog):
    cfg = compose([*tiny_run, "train.max_steps=40", "train.eval_every=20",
                   "data.tokenizer.sampling.enabled=true"])
    data = prepare_data(cfg.data, cfg.train.batch_tokens)
    with caplog.at_level("INFO", logger="seq2seq.training"):
        full = build_trainer(cfg, tmp_path / "full", data)
        full.fit()
    assert "epoch 2: sampled the segmentation" in caplog.text  # the run spans epochs
    assert full.train is not data.train

    cut = build_trainer(cfg, tmp_path / "cut", data)
    real_step = cut.train_step

    def step_then_sigterm(batch):
        loss = real_step(batch)
        if cut.state.step == 33:  # in the second epoch
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(cut, "train_step", step_then_sigterm)
    with pytest.raises(Interrupted):
        cut.fit()
    resumed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                                 resume=str(tmp_path / "cut")))
    build_trainer(resumed, tmp_path / "resumed", data).fit()
    expected = load_checkpoint(tmp_path / "full", "last.pt")["model"]
    for name, tensor in load_checkpoint(tmp_path / "resumed", "last.pt")["model"].items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)
