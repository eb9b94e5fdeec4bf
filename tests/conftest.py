"""Shared fixtures: the real Multi30k corpus (when present) and the tiny synthetic corpus.

`multi30k_dir` is the directory given by $SEQ2SEQ_MULTI30K, else ../shared/corpora/multi30k
beside the repository. Without it the tests that need it are skipped, except in CI (or with
SEQ2SEQ_REQUIRE_CORPUS=1), where a missing corpus fails them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seq2seq.config import CorpusKind, DataConfig, SplitFiles, TokenizerConfig

REPO = Path(__file__).resolve().parents[1]
TINY_DIR = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """A directory holding the real Multi30k {split}.{lang}.gz files (train, val, test_2016)."""
    configured = os.environ.get("SEQ2SEQ_MULTI30K")
    path = Path(configured) if configured else REPO.parent / "shared" / "corpora" / "multi30k"
    if not (path / "train.de.gz").is_file():
        reason = f"Multi30k not found in {path} (set SEQ2SEQ_MULTI30K=DIR)"
        if os.environ.get("CI") or os.environ.get("SEQ2SEQ_REQUIRE_CORPUS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def multi30k_prepared(multi30k_dir, tmp_path_factory):
    """Multi30k de-en prepared with the default settings (joint unigram 8k) in a temp data.root.

    Training the tokenizer takes seconds, so the session shares one.
    """
    from seq2seq.data import prepare_data

    root = tmp_path_factory.mktemp("multi30k_root")
    return prepare_data(DataConfig(source=str(multi30k_dir), root=str(root)))


@pytest.fixture(scope="session")
def tiny_corpus_dir() -> Path:
    """tests/data: tiny/{train,val,test}.{de,en,tsv} and multi30k/{split}.{de,en}.gz.

    The multi30k/ files have Multi30k names but not Multi30k content: use them through
    data=custom (the sha256 checks of data=multi30k_* reject them, which tests rely on).
    """
    return TINY_DIR


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """A data.root shared by the session, so the tiny tokenizer is trained once."""
    return tmp_path_factory.mktemp("tiny_root")


@pytest.fixture(scope="session")
def tiny_data_overrides(tiny_corpus_dir, tiny_data_root) -> list[str]:
    """Hydra overrides for the tiny de->en corpus through data=custom, with a 128-piece vocab.

    (sentencepiece can build at most 156 pieces on this corpus; more is a DataError.)

    Training data comes from aligned files, val and test from TSV files. data.root is a
    session temp dir; append your own `data.root=...` to change it (the last override wins).
    """
    tiny = tiny_corpus_dir / "tiny"
    return [
        "data=custom",
        "data.name=tiny",
        "data.src_lang=de",
        "data.tgt_lang=en",
        f"data.train_files.src={tiny / 'train.de'}",
        f"data.train_files.tgt={tiny / 'train.en'}",
        f"data.valid_files.tsv={tiny / 'val.tsv'}",
        f"data.test_files.tsv={tiny / 'test.tsv'}",
        "data.tokenizer.vocab_size=128",
        f"data.root={tiny_data_root}",
    ]


@pytest.fixture(scope="session")
def tiny_data_config(tiny_corpus_dir, tiny_data_root) -> DataConfig:
    """The same as tiny_data_overrides, as a DataConfig."""
    tiny = tiny_corpus_dir / "tiny"
    return DataConfig(
        corpus=CorpusKind.custom,
        name="tiny",
        src_lang="de",
        tgt_lang="en",
        root=str(tiny_data_root),
        train_files=SplitFiles(src=str(tiny / "train.de"), tgt=str(tiny / "train.en")),
        valid_files=SplitFiles(tsv=str(tiny / "val.tsv")),
        test_files=SplitFiles(tsv=str(tiny / "test.tsv")),
        tokenizer=TokenizerConfig(vocab_size=128),
    )


@pytest.fixture(scope="session")
def trained_checkpoint(tiny_data_overrides, tmp_path_factory) -> Path:
    """The run dir of a tiny model (hidden 32) trained for 30 steps on the tiny corpus.

    Its `checkpoints/best.pt` is what the translate and evaluate commands load; it takes a few
    seconds to train, once per session.
    """
    from hydra import compose, initialize_config_dir

    from seq2seq.config import register_configs, to_object
    from seq2seq.trainer import Trainer

    register_configs()
    overrides = tiny_data_overrides + [
        "train=smoke", "model.embedding_size=32", "model.hidden_size=32",
        "train.batch_tokens=400", "train.max_steps=30", "train.eval_every=30",
        "train.num_threads=1", "train.beam_size=1", "data.max_eval_pairs=10",
        "train.num_plot_sentences=0",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = to_object(compose("config", overrides=overrides))
    run_dir = tmp_path_factory.mktemp("trained_run")
    Trainer(cfg, run_dir).fit()
    return run_dir


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine waiting workers slow them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
