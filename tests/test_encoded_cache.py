"""The encoded training set is cached once and mapped afterwards: it round-trips, follows the
data and the tokenizer, and a damaged cache is rebuilt, never used."""

from __future__ import annotations

import dataclasses
import logging
import stat
from types import SimpleNamespace

import numpy as np
import pytest

from seq2seq.data import encoded_cache
from seq2seq.data import prepare as data_module
from seq2seq.data.prepare import prepare_data


def encoded_dirs(data):
    return sorted(p.name for p in data.directory.glob("encoded-train-*"))


def same_pairs(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x[1], y[1]) and np.array_equal(x[2], y[2])
                                    for x, y in zip(a, b, strict=True))


@pytest.fixture
def config(tiny_data_config, tmp_path):
    return dataclasses.replace(tiny_data_config, root=str(tmp_path), max_len=30)


def test_a_second_start_maps_what_the_first_encoded(config, caplog, monkeypatch):
    monkeypatch.setattr(data_module, "ENCODE_CHUNK_PAIRS", 37)  # 11 chunks, joined in order
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        first = prepare_data(config)
        assert "encoded 400 training pairs" in caplog.text
        caplog.clear()
        second = prepare_data(config)
    assert f"mapped the {len(first.train)} encoded" in caplog.text
    assert "encoded 400" not in caplog.text
    assert isinstance(second.train.src_tokens, np.memmap)
    assert same_pairs(first.train, second.train)
    assert second.train_dropped == first.train_dropped > 0  # max_len=30 drops some pairs
    # the cached ids are the tokenizer's own, filtered by max_len
    kept = [(s, t) for s, t in zip(first.tokenizer.encode_src(train_sources(config)),
                                   first.tokenizer.encode_tgt(train_targets(config)), strict=True)
            if len(s) <= 30 and len(t) <= 30]
    assert [x[1].tolist() for x in second.train] == [s for s, _ in kept]
    assert [x[2].tolist() for x in second.train] == [t for _, t in kept]


def test_the_key_tells_models_apart_whatever_bytes_they_hold(tmp_path):
    """A cache path hashes each model on its own: joined by a NUL, as before, the two pairs of
    model bytes here had one path (any byte, NUL too, occurs in a serialized model)."""
    def path(src: bytes, tgt: bytes):
        models = SimpleNamespace(to_bytes=lambda: {"src": src, "tgt": tgt})
        return encoded_cache.cache_path(tmp_path, "digest", models, max_len=100)

    assert path(b"a\0b", b"c") != path(b"a", b"b\0c")
    assert path(b"a", b"b") == path(b"a", b"b")


def train_sources(config):
    return open(config.train_files.src, encoding="utf-8").read().splitlines()


def train_targets(config):
    return open(config.train_files.tgt, encoding="utf-8").read().splitlines()


@pytest.mark.parametrize("change", [{"max_train_pairs": 300}, {"max_len": 25},
                                    {"tokenizer_vocab_size": 100}])
def test_a_change_of_data_or_tokenizer_encodes_anew(config, change):
    first = prepare_data(config)
    if "tokenizer_vocab_size" in change:
        tokenizer = dataclasses.replace(config.tokenizer, vocab_size=100)
        changed = dataclasses.replace(config, tokenizer=tokenizer)
    else:
        changed = dataclasses.replace(config, **change)
    second = prepare_data(changed)
    assert len(encoded_dirs(second)) == 2 and encoded_dirs(first)[0] in encoded_dirs(second)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_meta"])
def test_a_damaged_cache_is_rebuilt_not_used(config, caplog, damage):
    first = prepare_data(config)
    expected = [(s.tolist(), t.tolist()) for _, s, t in first.train]  # before the files change
    (cache,) = first.directory.glob("encoded-train-*")
    tokens = cache / "src_tokens.bin"
    if damage == "truncate":
        tokens.write_bytes(tokens.read_bytes()[:-40])
    elif damage == "flip":
        data = bytearray(tokens.read_bytes())
        data[-1] ^= 0xFF
        tokens.write_bytes(bytes(data))
    else:
        (cache / "meta.json").unlink()
    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        again = prepare_data(config)
    assert "is damaged" in caplog.text and "encoding it again" in caplog.text
    assert [(s.tolist(), t.tolist()) for _, s, t in again.train] == expected
    assert "mapped the" in _log_of(prepare_data, config, caplog)  # and whole again afterwards


def _log_of(function, config, caplog) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        function(config)
    return caplog.text


def test_the_cache_follows_the_umask_like_every_other_file(config, umask_022):
    data = prepare_data(config)
    (cache,) = data.directory.glob("encoded-train-*")
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (cache, *cache.iterdir())}
    assert modes.pop(cache.name) == stat.S_IMODE(data.directory.stat().st_mode) == 0o755
    assert set(modes.values()) == {0o644} and len(modes) == 5  # four arrays and meta.json
