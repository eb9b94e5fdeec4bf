"""One-file custom corpora: valid and test held out of the training file, deterministically,
with no held-out source left in training, recorded line by line, and read back the same by
evaluate's --split."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from seq2seq.config import ConfigError, HoldoutConfig, SplitFiles
from seq2seq.data.holdout import hold_out
from seq2seq.data.prepare import prepare_data, read_split
from seq2seq.errors import DataError

PAIRS = [(f"Satz {i % 150}.", f"Sentence {i}.") for i in range(300)] + [("", "leer"), (" ", "")]


def test_the_same_seed_holds_out_the_same_lines_and_another_seed_others():
    first = hold_out(PAIRS, {"valid": 20, "test": 30}, seed=1)
    again = hold_out(PAIRS, {"valid": 20, "test": 30}, seed=1)
    other = hold_out(PAIRS, {"valid": 20, "test": 30}, seed=2)
    assert first == again
    assert first.indices != other.indices
    assert [len(first.splits["valid"]), len(first.splits["test"])] == [20, 30]
    assert first.indices["valid"] == sorted(first.indices["valid"])  # kept in file order


def test_no_held_out_source_is_left_in_training_or_held_out_twice():
    found = hold_out(PAIRS, {"valid": 20, "test": 30}, seed=3)
    held = [src for pairs in found.splits.values() for src, _ in pairs]
    assert len(set(held)) == len(held) == 50
    train = [pair for i, pair in enumerate(PAIRS) if i not in found.removed]
    assert not set(held) & {src for src, _ in train}
    assert all(src.strip() and tgt.strip() for src, tgt in held_pairs(found))
    # every source occurs twice in PAIRS: its other pair is dropped from training
    assert len(found.dropped) == 50
    assert len(train) + 50 + len(found.dropped) == len(PAIRS)


def held_pairs(found):
    return [pair for pairs in found.splits.values() for pair in pairs]


def test_the_record_lists_1_based_lines():
    found = hold_out(PAIRS, {"valid": 5, "test": 5}, seed=1)
    record = found.record()
    assert [PAIRS[line - 1] for line in record["valid_lines"]] == found.splits["valid"]
    assert [PAIRS[line - 1][0] for line in record["train_lines_dropped_as_held_out_sources"]] \
        == [PAIRS[i][0] for i in found.dropped]


def test_too_small_a_corpus_is_one_clear_error():
    with pytest.raises(DataError, match="too few to hold out 100 valid \\+ 100 test pairs"):
        hold_out(PAIRS, {"valid": 100, "test": 100}, seed=1)


def test_holdout_sizes_must_be_positive():
    with pytest.raises(ConfigError, match="data.holdout.test=0"):
        HoldoutConfig(test=0)


def test_one_training_file_is_enough_and_evaluate_reads_the_same_splits(tiny_data_config,
                                                                      tmp_path, caplog):
    cfg = dataclasses.replace(
        tiny_data_config, root=str(tmp_path), valid_files=SplitFiles(), test_files=SplitFiles(),
        holdout=HoldoutConfig(valid=30, test=40, seed=7))
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        data = prepare_data(cfg)
    assert (len(data.valid), len(data.test)) == (30, 40)
    train_sources = {src for src, _ in read_split(cfg, "train")}
    assert not (set(data.test.src) | set(data.valid.src)) & train_sources
    assert [s for s, _ in read_split(cfg, "test")] == data.test.src
    assert [s for s, _ in read_split(cfg, "valid")] == data.valid.src

    record = json.loads((data.directory / "holdout.json").read_text(encoding="utf-8"))
    lines = Path(cfg.train_files.src).read_text(encoding="utf-8").splitlines()
    assert [lines[n - 1] for n in record["test_lines"]] == data.test.src
    assert record["seed"] == 7
    assert any("held out 30 valid, 40 test pairs" in r.getMessage() for r in caplog.records)


def test_a_split_with_files_is_read_from_them_and_only_the_other_is_held_out(tiny_data_config,
                                                                           tmp_path):
    cfg = dataclasses.replace(tiny_data_config, root=str(tmp_path), test_files=SplitFiles(),
                              holdout=HoldoutConfig(test=25))
    data = prepare_data(cfg)
    assert len(data.test) == 25
    assert data.valid.src == [s for s, _ in read_split(tiny_data_config, "valid")]
