"""One-file custom corpora: valid and test held out of the training file, deterministically,
with no held-out source left in training, recorded line by line, and read back the same by
evaluate's --split, even after the file changed (a trained model keeps its pairs by content)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from seq2seq.cli import evaluate
from seq2seq.config import ConfigError, HoldoutConfig, SplitFiles
from seq2seq.data.holdout import hold_out, pair_key
from seq2seq.data.prepare import prepare_data, read_split
from seq2seq.errors import DataError
from seq2seq.training.setup import build_trainer

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


# ---- a trained model keeps its held-out pairs, and its data -----------------------------------

NEW_LINES = "Ein neuer Satz .\tA new sentence .\nNoch ein Satz .\tAnother sentence .\n" * 3


def prepend_lines(path: Path) -> None:
    path.write_text(NEW_LINES + path.read_text(encoding="utf-8"), encoding="utf-8")


@pytest.fixture
def one_file_corpus(tiny_corpus_dir, tiny_data_config, tmp_path):
    """The tiny corpus as one TSV file with valid and test held out, in its own data.root."""
    tsv = tmp_path / "corpus.tsv"
    tiny = tiny_corpus_dir / "tiny"
    tsv.write_text("".join((tiny / f"{split}.tsv").read_text(encoding="utf-8")
                           for split in ("train", "val", "test")), encoding="utf-8")
    return dataclasses.replace(
        tiny_data_config, root=str(tmp_path / "data"), train_files=SplitFiles(tsv=str(tsv)),
        valid_files=SplitFiles(), test_files=SplitFiles(), holdout=HoldoutConfig(valid=40, test=40))


def test_held_out_pairs_are_found_again_by_content_when_the_file_changed(one_file_corpus):
    data = prepare_data(one_file_corpus)
    prepend_lines(Path(one_file_corpus.train_files.tsv))
    # drawn again, the split would hold other pairs, some of them the model's training pairs
    assert [s for s, _ in read_split(one_file_corpus, "test", None)] != data.test.src
    held_out = data.record()["held_out"]
    assert [s for s, _ in read_split(one_file_corpus, "test", held_out)] == data.test.src
    assert [s for s, _ in read_split(one_file_corpus, "valid", held_out)] == data.valid.src


def test_a_held_out_pair_gone_from_the_file_is_one_clear_error(one_file_corpus):
    data = prepare_data(one_file_corpus)
    tsv = Path(one_file_corpus.train_files.tsv)
    gone = [data.test.src[0], data.test.ref[0]]
    lines = tsv.read_text(encoding="utf-8").splitlines(keepends=True)
    tsv.write_text("".join(line for line in lines if line.split("\t")[:2] != gone),
                   encoding="utf-8")
    with pytest.raises(DataError, match=f"1 of the 40 pairs held out as the test split .* no "
                                        f"longer in {tsv}: the file changed"):
        read_split(one_file_corpus, "test", data.record()["held_out"])


def test_pair_keys_tell_where_the_tab_sits():
    assert pair_key("a\tb", "c") != pair_key("a", "b\tc")
    assert pair_key("a b", "c") != pair_key("a", "b c")


def test_evaluate_scores_the_runs_own_test_pairs_after_the_file_changed(
        one_file_corpus, tiny_model_overrides, compose, tmp_path):
    tsv = one_file_corpus.train_files.tsv
    cfg = compose([*tiny_model_overrides, "data=custom", "data.name=tiny", "data.src_lang=de",
                   "data.tgt_lang=en", f"data.train_files.tsv={tsv}", "data.holdout.valid=40",
                   "data.holdout.test=40", "data.tokenizer.vocab_size=128",
                   f"data.root={one_file_corpus.root}", "train.max_steps=2", "train.eval_every=2"])
    build_trainer(cfg, tmp_path / "run").fit()
    before, after = tmp_path / "before.txt", tmp_path / "after.txt"
    args = ["--checkpoint", str(tmp_path / "run"), "--split", "test", "--beam", "1"]
    evaluate.main([*args, "--output", str(before)])
    prepend_lines(Path(tsv))
    evaluate.main([*args, "--output", str(after)])
    assert after.read_text(encoding="utf-8") == before.read_text(encoding="utf-8")
    assert len(after.read_text(encoding="utf-8").splitlines()) == 40

    # resuming on the changed file is refused before a tokenizer is trained for it
    spm_models = sorted(Path(one_file_corpus.root).rglob("*.model"))
    with pytest.raises(DataError, match="not the ones the checkpoint was trained on: their "
                                        "digest is [0-9a-f]{16} here but [0-9a-f]{16}"):
        build_trainer(dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, max_steps=4, resume=str(tmp_path / "run"))), tmp_path / "run")
    assert sorted(Path(one_file_corpus.root).rglob("*.model")) == spm_models
