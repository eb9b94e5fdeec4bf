"""The training split as a stream: what it keeps, its digest, its chunks and the sentencepiece
sample, read from files anew at every pass."""

from __future__ import annotations

import gzip

import pytest

from seq2seq.data.corpus import AlignedFiles
from seq2seq.data.training_pairs import TrainingPairs
from seq2seq.errors import DataError

PAIRS = [("a", "A"), ("", "B"), ("c", "C"), ("d", "  "), ("e", "E"), ("f", "F"), ("g", "G")]


def test_skipped_then_limited_then_empty_pairs_are_left_out():
    pairs = TrainingPairs(PAIRS, skip={0, 4}, limit=4)  # of b, c, d, f: b and d are empty
    assert list(pairs) == [("c", "C"), ("f", "F")]
    assert len(pairs) == 2 and pairs.empty == 2


def test_the_digest_is_that_of_the_pairs_kept():
    kept = [pair for pair in PAIRS if pair[0].strip() and pair[1].strip()]
    assert TrainingPairs(PAIRS).digest == TrainingPairs(kept).digest
    assert TrainingPairs(PAIRS).digest != TrainingPairs(PAIRS, limit=6).digest
    assert TrainingPairs(PAIRS).digest != TrainingPairs([*kept[:-1], ("g", "G!")]).digest


@pytest.mark.parametrize("one,other", [
    ([("a\tb", "c")], [("a", "b\tc")]),  # a TAB may sit in either side of aligned files
    ([("a", "b"), ("c", "d")], [("a", "b\nc\td")]),  # two pairs, or one (given as a list)
])
def test_pairs_that_differ_only_in_where_a_separator_sits_differ_in_digest(one, other):
    assert TrainingPairs(one).digest != TrainingPairs(other).digest


def test_chunks_hold_every_pair_in_order():
    pairs = TrainingPairs(PAIRS)
    chunks = list(pairs.chunks(2))
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    assert [pair for chunk in chunks for pair in chunk] == list(pairs)


def test_files_are_read_again_at_every_pass(tmp_path):
    (tmp_path / "a.de.gz").write_bytes(gzip.compress(b"eins\nzwei\n\ndrei\n"))
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n\n", encoding="utf-8")
    pairs = TrainingPairs(AlignedFiles(tmp_path / "a.de.gz", tmp_path / "a.en"))
    assert len(pairs) == 2 and pairs.empty == 2
    assert list(pairs) == list(pairs) == [("eins", "one"), ("zwei", "two")]


def test_misaligned_files_fail_on_the_first_pass(tmp_path):
    (tmp_path / "a.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a.de has 3 lines but .*a.en has 2"):
        TrainingPairs(AlignedFiles(tmp_path / "a.de", tmp_path / "a.en"))


def test_sentencepiece_sees_every_sentence_when_they_fit():
    pairs = TrainingPairs(PAIRS)
    kept = list(pairs)
    assert list(pairs.sentences("joint", 10)) == [s for s, _ in kept] + [t for _, t in kept]
    assert list(pairs.sentences("src", 5)) == [s for s, _ in kept]
    assert list(pairs.sentences("tgt", 5)) == [t for _, t in kept]


def test_past_the_limit_a_seeded_sample_in_file_order_sources_first():
    pairs = TrainingPairs([(f"s{i}", f"t{i}") for i in range(400)])
    sample = list(pairs.sentences("joint", 300))
    assert sample == list(pairs.sentences("joint", 300))  # the same draw every time
    assert len(set(sample)) == 300
    sources = [s for s in sample if s.startswith("s")]
    assert sample[:len(sources)] == sources  # every source before every target
    assert sources == sorted(sources, key=lambda s: int(s[1:]))
    assert 100 < len(sources) < 200
    one_side = list(pairs.sentences("src", 300))
    assert len(one_side) == 300 and [s[1:] for s in pairs.sentences("tgt", 300)] == [
        s[1:] for s in one_side]  # both sides of separate models sample the same pairs
