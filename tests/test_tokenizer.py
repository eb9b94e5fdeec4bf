"""sentencepiece tokenizers: fixed ids, round trips, joint/separate vocabularies, the cache."""

from __future__ import annotations

import dataclasses
import logging
import unicodedata

import pytest

from seq2seq.config import SubwordModel, TokenizerConfig
from seq2seq.data import tokenizer as tokenizer_module
from seq2seq.data.corpus import read_aligned
from seq2seq.data.tokenizer import Tokenizer, load_or_train_tokenizer
from seq2seq.data.training_pairs import TrainingPairs
from seq2seq.errors import DataError
from seq2seq.special_ids import BOS_ID, EOS_ID, PAD_ID, UNK_ID


def normalized(text: str) -> str:
    """What sentencepiece's default nmt_nfkc normalization makes of a sentence."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


@pytest.fixture(scope="module")
def tiny_pairs(tiny_corpus_dir):
    tiny = tiny_corpus_dir / "tiny"
    return TrainingPairs(read_aligned(tiny / "train.de", tiny / "train.en"))


def with_tokenizer(cfg, **changes):
    return dataclasses.replace(cfg, tokenizer=dataclasses.replace(cfg.tokenizer, **changes))


def test_multi30k_round_trip_keeps_umlauts(multi30k_prepared):
    tok, valid, test = multi30k_prepared.tokenizer, multi30k_prepared.valid, multi30k_prepared.test
    umlauts = [s for s in valid.src if any(c in s for c in "äöüßÄÖÜ")]
    assert len(umlauts) > 300
    ids = tok.encode_src(umlauts)
    assert all(UNK_ID not in sentence for sentence in ids)
    # nmt_nfkc normalization keeps umlauts and ß; it only maps odd spaces (one NBSP in val)
    assert tok.decode_src(ids) == [normalized(s) for s in umlauts]
    assert sum(normalized(s) != s for s in umlauts) == 1
    for split in (valid, test):
        assert tok.decode_src(split.src_ids) == [normalized(s) for s in split.src]
        assert tok.decode_tgt(split.tgt_ids) == [normalized(s) for s in split.ref]


def test_special_ids_are_fixed_and_never_produced_by_encoding(multi30k_prepared):
    tok = multi30k_prepared.tokenizer
    assert tok.joint and tok.src_vocab_size == tok.tgt_vocab_size == 8000
    assert tok.src_pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]
    produced = {i for sentence in multi30k_prepared.valid.src_ids for i in sentence}
    assert not produced & {PAD_ID, BOS_ID, EOS_ID}


def test_decode_ignores_pad_bos_eos(multi30k_prepared):
    tok = multi30k_prepared.tokenizer
    [ids] = tok.encode_tgt(["A man in a blue shirt."])
    assert tok.decode_tgt([[BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]]) == ["A man in a blue shirt."]
    assert "".join(tok.tgt_pieces(ids)).replace("\u2581", " ").strip() == "A man in a blue shirt."


def test_bytes_round_trip(tiny_data_config, tiny_pairs, tmp_path):
    tok = load_or_train_tokenizer(tiny_data_config, tiny_pairs, tmp_path)
    models = tok.to_bytes()
    assert models["src"] == models["tgt"]
    again = Tokenizer.from_bytes(models)
    lines = [s for s, _ in list(tiny_pairs)[:20]]
    assert again.joint and again.encode_src(lines) == tok.encode_src(lines)


def test_separate_vocabularies(tiny_data_config, tiny_pairs, tmp_path):
    cfg = with_tokenizer(tiny_data_config, joint=False, vocab_size=60,
                         model_type=SubwordModel.bpe)
    tok = load_or_train_tokenizer(cfg, tiny_pairs, tmp_path)
    assert not tok.joint
    assert tok.src_vocab_size == tok.tgt_vocab_size == 60
    assert tok.to_bytes()["src"] != tok.to_bytes()["tgt"]
    assert tok.decode_tgt(tok.encode_tgt(["A red dog sleeps."])) == ["A red dog sleeps."]
    assert tok.decode_src(tok.encode_src(["Ein müder Hund schläft."])) == [
        "Ein müder Hund schläft."
    ]
    model_dir = next(tmp_path.iterdir())
    assert model_dir.name.startswith("spm-separate-bpe-60-")
    assert sorted(p.name for p in model_dir.iterdir()) == ["sha256.json", "src.model", "tgt.model"]


def test_second_call_reuses_the_cache(tiny_data_config, tiny_pairs, tmp_path, monkeypatch):
    first = load_or_train_tokenizer(tiny_data_config, tiny_pairs, tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of reusing the cache")

    monkeypatch.setattr(tokenizer_module.spm.SentencePieceTrainer, "train", no_training)
    again = load_or_train_tokenizer(tiny_data_config, tiny_pairs, tmp_path)
    assert again.to_bytes() == first.to_bytes()
    # no temp files are left beside the cached model
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["joint.model",
                                                                          "sha256.json"]


def changed_piece(model: bytes) -> bytes:
    """The model with one byte of its longest ASCII word piece changed: it still parses, as
    another model."""
    tokenizer = Tokenizer(model, model)
    pieces = tokenizer.src_pieces(range(tokenizer.src_vocab_size))
    words = pieces[max(PAD_ID, UNK_ID, BOS_ID, EOS_ID) + 1:]  # after the special pieces
    piece = max((p for p in words if p.isascii()), key=len).encode()
    index = model.index(piece) + len(piece) - 1
    changed = model[:index] + (b"Q" if piece[-1:] != b"Q" else b"q") + model[index + 1:]
    assert Tokenizer(changed, changed).src_pieces(range(len(pieces))) != pieces
    return changed


@pytest.mark.parametrize("damage", ["not_a_model", "changed_piece", "no_checksums"])
def test_a_damaged_cached_model_is_trained_again_never_used(tiny_data_config, tiny_pairs,
                                                            tmp_path, caplog, damage):
    first = load_or_train_tokenizer(tiny_data_config, tiny_pairs, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*/joint.model")
    if damage == "not_a_model":
        cached.write_bytes(b"not a sentencepiece model")
    elif damage == "changed_piece":
        cached.write_bytes(changed_piece(cached.read_bytes()))
    else:  # a crash between writing the models and their checksums
        (cached.parent / tokenizer_module.CHECKSUMS).unlink()
    with caplog.at_level(logging.WARNING):
        again = load_or_train_tokenizer(tiny_data_config, tiny_pairs, cache_dir=tmp_path)
    assert again.to_bytes() == first.to_bytes() and cached.read_bytes() == first.to_bytes()["src"]
    assert any(str(cached.parent) in r.message and "are damaged" in r.message
               and "training them again" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):  # and whole again afterwards
        load_or_train_tokenizer(tiny_data_config, tiny_pairs, cache_dir=tmp_path)
    assert "reusing sentencepiece models" in caplog.text


@pytest.mark.parametrize(
    "change",
    [{"vocab_size": 100}, {"model_type": SubwordModel.bpe}, {"character_coverage": 0.9999},
     {"character_coverage": 0.9999999},  # the same as 1.0 in 6 digits
     {"joint": False, "vocab_size": 60}],
)
def test_cache_is_keyed_by_settings(tiny_data_config, tiny_pairs, tmp_path, change):
    load_or_train_tokenizer(tiny_data_config, tiny_pairs, tmp_path)
    load_or_train_tokenizer(with_tokenizer(tiny_data_config, **change), tiny_pairs, tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_cache_is_keyed_by_training_data(tiny_data_config, tiny_pairs, tmp_path):
    load_or_train_tokenizer(tiny_data_config, tiny_pairs, tmp_path)
    load_or_train_tokenizer(tiny_data_config, TrainingPairs(list(tiny_pairs), limit=300), tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_vocab_too_large_for_the_corpus_says_what_fits(tiny_data_config, tiny_pairs, tmp_path):
    cfg = dataclasses.replace(tiny_data_config, tokenizer=TokenizerConfig(vocab_size=8000))
    with pytest.raises(DataError) as error:
        load_or_train_tokenizer(cfg, tiny_pairs, tmp_path)
    message = str(error.value)
    assert "data.tokenizer.vocab_size=8000 is too large" in message
    assert "set data.tokenizer.vocab_size=156 or less" in message
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_corrupt_model_bytes_are_a_data_error():
    with pytest.raises(DataError, match="sentencepiece model is corrupt"):
        Tokenizer(b"not a model", b"not a model")


def test_past_max_sentences_a_seeded_sample_trains_the_model(tiny_data_config, tiny_pairs,
                                                              tmp_path, caplog):
    sampled = with_tokenizer(tiny_data_config, max_sentences=300, vocab_size=100)
    with caplog.at_level(logging.INFO, logger="seq2seq.data.tokenizer"):
        first = load_or_train_tokenizer(sampled, tiny_pairs, tmp_path / "a")
    assert "sample of 300 of 800 sentences" in caplog.text  # joint: both sides count
    (key,) = (p.name for p in (tmp_path / "a").iterdir())
    assert "-sample300-" in key
    again = load_or_train_tokenizer(sampled, tiny_pairs, tmp_path / "b")
    assert again.to_bytes() == first.to_bytes()  # the same data gives the same sample
    whole = load_or_train_tokenizer(with_tokenizer(tiny_data_config, vocab_size=100),
                                    tiny_pairs, tmp_path / "c")
    assert whole.to_bytes() != first.to_bytes()
    assert "-sample" not in next((tmp_path / "c").iterdir()).name  # no sample, same key as ever
