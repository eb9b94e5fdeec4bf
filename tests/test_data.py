"""prepare_data: filtering rules, slices, custom-corpus configuration errors, statistics."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import pytest

from seq2seq.config import CorpusKind, DataConfig, SplitFiles, TokenizerConfig
from seq2seq.data.prepare import prepare_data
from seq2seq.errors import DataError

LONG_DE = "Ein großer Hund läuft im Park und lacht " * 8
LONG_EN = "A big dog runs in the park and laughs " * 8


@pytest.fixture
def corpus(tmp_path, tiny_corpus_dir):
    """A copy of the tiny corpus in tmp_path/corpus, to be edited by a test."""
    return shutil.copytree(tiny_corpus_dir / "tiny", tmp_path / "corpus")


def custom_config(directory, root, **changes) -> DataConfig:
    cfg = DataConfig(
        corpus=CorpusKind.custom, name="test", src_lang="de", tgt_lang="en", root=str(root),
        train_files=SplitFiles(src=str(directory / "train.de"), tgt=str(directory / "train.en")),
        valid_files=SplitFiles(tsv=str(directory / "val.tsv")),
        test_files=SplitFiles(src=str(directory / "test.de"), tgt=str(directory / "test.en")),
        tokenizer=TokenizerConfig(vocab_size=100),
    )
    return dataclasses.replace(cfg, **changes)


def append(path, *lines):
    with open(path, "a", encoding="utf-8") as out:
        out.writelines(line + "\n" for line in lines)


def test_training_filters_empty_and_long_pairs_with_a_logged_count(corpus, tmp_path, caplog):
    append(corpus / "train.de", "", "   ", "Ein Hund.", LONG_DE, "Ein Hund.")
    append(corpus / "train.en", "A dog.", "\t", "", "A dog.", LONG_EN)
    cfg = custom_config(corpus, tmp_path / "root", max_len=40)
    with caplog.at_level(logging.INFO, logger="seq2seq.data.prepare"):
        data = prepare_data(cfg)
    assert len(data.train) == 400
    assert data.train_dropped == 5
    assert data.drop_counts == {"empty": 3, "too_long": 2}
    assert "dropped 5 of 405 training pairs: 3 empty, 2 over data.max_len=40" in caplog.text
    assert max(data.train.src_lengths.max(), data.train.tgt_lengths.max()) <= 40


def test_corpora_that_differ_only_in_where_a_tab_sits_share_no_cache(corpus, tmp_path):
    cfg = custom_config(corpus, tmp_path / "root")
    prepared = []
    for src, tgt in (("Ein\tHund.", "A dog."), ("Ein", "Hund.\tA dog.")):  # edited in place
        for path, line in ((corpus / "train.de", src), (corpus / "train.en", tgt)):
            rest = path.read_text(encoding="utf-8").split("\n", 1)[1]
            path.write_text(f"{line}\n{rest}", encoding="utf-8")
        prepared.append(prepare_data(cfg))
    directory = prepared[0].directory
    assert len(list(directory.glob("spm-*"))) == len(list(directory.glob("encoded-train-*"))) == 2
    _, src, _ = prepared[1].train[0]
    assert prepared[1].tokenizer.decode_src([src.tolist()]) == ["Ein"]


def test_evaluation_data_is_never_filtered(corpus, tmp_path):
    append(corpus / "test.de", "", LONG_DE)
    append(corpus / "test.en", "An empty source.", LONG_EN)
    append(corpus / "val.tsv", "\t", f"{LONG_DE}\t{LONG_EN}")
    data = prepare_data(custom_config(corpus, tmp_path / "root", max_len=40))
    assert len(data.valid) == 52 and len(data.test) == 52
    assert data.test.src[-2:] == ["", LONG_DE]
    assert data.test.ref[-2:] == ["An empty source.", LONG_EN]
    assert data.test.src_ids[-2] == []
    assert len(data.test.src_ids[-1]) > 40
    assert data.valid.src[-2:] == ["", LONG_DE] and data.valid.ref[-2] == ""
    assert data.valid.name == "valid" and data.test.name == "test"


def test_slices_keep_the_first_pairs(corpus, tmp_path):
    data = prepare_data(custom_config(corpus, tmp_path / "root", max_train_pairs=300,
                                      max_eval_pairs=7))
    assert len(data.train) == 300
    assert len(data.valid) == len(data.test) == 7
    first = (corpus / "train.de").read_text(encoding="utf-8").splitlines()[:300]
    assert data.tokenizer.decode_src([data.train[i][1].tolist()
                                      for i in range(len(data.train))]) == first
    assert data.test.src == (corpus / "test.de").read_text(encoding="utf-8").splitlines()[:7]
    # the tokenizer is trained on the slice, and cached apart from the full corpus's
    prepare_data(custom_config(corpus, tmp_path / "root"))
    assert len(list(data.directory.glob("spm-*"))) == 2


def test_nothing_left_after_filtering_is_an_error(corpus, tmp_path):
    (corpus / "train.de").write_text("\n \n", encoding="utf-8")
    (corpus / "train.en").write_text("A dog.\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="the train split has no pair with text on both sides"):
        prepare_data(custom_config(corpus, tmp_path / "root"))


def test_all_pairs_too_long_is_an_error(corpus, tmp_path):
    with pytest.raises(DataError, match=r"no training pairs left .* raise data.max_len"):
        prepare_data(custom_config(corpus, tmp_path / "root", max_len=2))


def test_an_empty_evaluation_split_is_an_error(corpus, tmp_path):
    (corpus / "val.tsv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="the valid split is empty"):
        prepare_data(custom_config(corpus, tmp_path / "root"))


def test_an_evaluation_split_without_text_is_an_error(corpus, tmp_path):
    (corpus / "val.tsv").write_text("\t\n\tA dog.\n", encoding="utf-8")
    with pytest.raises(DataError, match="the valid split has no pair with text on both sides"):
        prepare_data(custom_config(corpus, tmp_path / "root"))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (SplitFiles(src="train.de", tsv="val.tsv"), "set either data.train_files.tsv or"),
        (SplitFiles(src="train.de"), "data.train_files needs a TSV file"),
        (SplitFiles(), "data.train_files needs a TSV file"),
        (SplitFiles(src="train.de", tgt="nope.en"), r"data.train_files.tgt='.*nope.en': file not"),
        (SplitFiles(tsv="nope.tsv"), r"data.train_files.tsv='.*nope.tsv': file not found"),
    ],
)
def test_custom_file_configuration_errors(corpus, tmp_path, files, message):
    files = SplitFiles(**{k: v and str(corpus / v) for k, v in dataclasses.asdict(files).items()})
    with pytest.raises(DataError, match=message):
        prepare_data(custom_config(corpus, tmp_path / "root", train_files=files))


def test_relative_paths_resolve_against_the_current_directory(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(
        corpus=CorpusKind.custom, name="rel", src_lang="de", tgt_lang="en", root="out",
        train_files=SplitFiles(tsv="corpus/train.tsv"),
        valid_files=SplitFiles(tsv="corpus/val.tsv"),
        test_files=SplitFiles(tsv="corpus/test.tsv"),
        tokenizer=TokenizerConfig(vocab_size=100),
    )
    data = prepare_data(cfg)
    assert data.directory == tmp_path / "out" / "rel.de-en"
    assert len(list(data.directory.glob("spm-*/joint.model"))) == 1


def test_multi30k_missing_split_lists_what_exists(multi30k_dir, tmp_path):
    cfg = DataConfig(src_lang="en", tgt_lang="cs", test_split="test_2017_mscoco",
                     source=str(multi30k_dir), root=str(tmp_path))
    with pytest.raises(DataError, match="no split 'test_2017_mscoco' for language 'cs'; splits "
                       "available for 'cs': train, val, test_2016_flickr, test_2018_flickr"):
        prepare_data(cfg)
    assert list(tmp_path.iterdir()) == []  # checked before anything was fetched


def test_multi30k_source_must_be_a_directory(tmp_path):
    cfg = DataConfig(source=str(tmp_path / "nowhere"), root=str(tmp_path))
    with pytest.raises(DataError, match="is not a directory"):
        prepare_data(cfg)


def test_multi30k_prepared_has_every_line(multi30k_prepared):
    data = multi30k_prepared
    assert (len(data.train), len(data.valid), len(data.test)) == (29000, 1014, 1000)
    assert data.train_dropped == 0  # no Multi30k pair is empty or over 100 subwords
    assert data.directory.name == "multi30k.de-en"
    assert (data.directory.parent / "multi30k" / "raw" / "train.de.gz").is_file()
    assert data.valid.src[0] == "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen"
    assert data.valid.ref[0] == "A group of men are loading cotton onto a truck"


def test_stats(multi30k_prepared):
    stats = multi30k_prepared.stats()
    assert list(stats["splits"]) == ["train", "val", "test_2016_flickr"]
    train = stats["splits"]["train"]
    assert train["pairs"] == 29000
    assert train["src_tokens"] == sum(multi30k_prepared.train.src_lengths)
    assert train["src_mean_len"] == pytest.approx(train["src_tokens"] / 29000)
    assert train["tgt_max_len"] == max(multi30k_prepared.train.tgt_lengths)
    p50, p95, p99 = train["src_len_percentiles"].values()
    lengths = sorted(multi30k_prepared.train.src_lengths)
    assert p50 <= p95 <= p99 <= train["src_max_len"]
    assert sum(n <= p95 for n in lengths) >= 0.95 * len(lengths) > sum(n < p95 for n in lengths)
    assert stats["src_vocab_size"] == stats["tgt_vocab_size"] == 8000
    assert stats["padding_efficiency"] >= 0.9
