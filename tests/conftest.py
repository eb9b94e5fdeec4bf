"""Shared setup: the model variants every test runs over, the one compose helper, the tiny
run's overrides, the real Multi30k corpus and the tiny synthetic corpus.

Variants: a test that takes an argument named `scorer` runs once per attention scorer (every
name in seq2seq.config.ATTENTION_CONFIGS, so a new scorer is tested without editing a test), and
one that takes `decoder` once per decoder (a `Decoder` pair of style and input feeding). Ask a
scorer's module how many heads it has (`attention.num_heads`) instead of special-casing one.

`multi30k_dir` is the directory given by $SEQ2SEQ_MULTI30K, else ../shared/corpora/multi30k
beside the repository, else a copy downloaded once into the user's cache: the tests that need it
run on a fresh machine with internet access, and fail (never skip) when none of that works.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from filelock import FileLock

from seq2seq.config import (
    ATTENTION_CONFIGS,
    AttentionConfig,
    Config,
    CorpusKind,
    DataConfig,
    DecoderStyle,
    SplitFiles,
    TokenizerConfig,
    to_object,
)
from seq2seq.data.corpus import fetch_multi30k, multi30k_filename
from seq2seq.errors import DataError

REPO = Path(__file__).resolve().parents[1]
TINY_DIR = REPO / "tests" / "data"


class Decoder(NamedTuple):
    """One decoder variant, as the decoder config group names it."""

    name: str
    style: DecoderStyle
    input_feeding: bool


DECODERS = [
    Decoder("luong", DecoderStyle.luong, False),
    Decoder("bahdanau", DecoderStyle.bahdanau, False),
    Decoder("luong_input_feeding", DecoderStyle.luong, True),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run tests that take `scorer` over every scorer, and those that take `decoder` over every
    decoder (both: every pair), unless the test parametrizes them itself."""
    explicit = {name for mark in metafunc.definition.iter_markers("parametrize")
                for name in (mark.args[0].split(",") if isinstance(mark.args[0], str)
                             else mark.args[0])}
    if "scorer" in metafunc.fixturenames and "scorer" not in explicit:
        metafunc.parametrize("scorer", list(ATTENTION_CONFIGS))
    if "decoder" in metafunc.fixturenames and "decoder" not in explicit:
        metafunc.parametrize("decoder", DECODERS, ids=[d.name for d in DECODERS])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort: otherwise in file order), so that the parallel workers
    do not end with one of them still running a long test while the other waits."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def attention_config(scorer: str) -> AttentionConfig:
    """The default settings of the test's `scorer`, without attention dropout."""
    return ATTENTION_CONFIGS[scorer](dropout=0.0)


def compose_overrides(overrides: Sequence[str] = ()) -> Config:
    """The validated config `python scripts/train.py OVERRIDES` would train with."""
    from seq2seq.cli.common import compose_config

    return to_object(compose_config(overrides))


@pytest.fixture(scope="session")
def compose():
    """The one compose helper: `compose(overrides)` -> Config, as the train command sees it."""
    return compose_overrides


@pytest.fixture(scope="session")
def tiny_model_overrides() -> list[str]:
    """debug=smoke shrunk further, for any corpus: a model and run that take seconds."""
    return ["debug=smoke", "model.embedding_size=32", "model.hidden_size=32",
            "train.batch_tokens=400", "train.num_threads=1", "train.beam_size=1",
            "data.max_eval_pairs=10", "train.num_plot_sentences=0"]


@pytest.fixture(scope="session")
def tiny_run(tiny_data_overrides, tiny_model_overrides) -> list[str]:
    """Overrides of a run that takes seconds on the tiny corpus (append `train.max_steps=N` and
    others; the last value of a key wins)."""
    return [*tiny_data_overrides, *tiny_model_overrides]


MULTI30K_TEST_FILES = [(split, lang) for split in ("train", "val", "test_2016_flickr")
                       for lang in ("de", "en")]  # what the tests read: de-en, 1.3 MB
MULTI30K_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
    / "seq2seq" / "multi30k"


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """A directory holding the real Multi30k de-en {split}.{lang}.gz files (train, val,
    test_2016_flickr): $SEQ2SEQ_MULTI30K, ../shared/corpora/multi30k, or the user's cache, which
    the first run fills from the published URLs (sha256-verified, as `prepare_data` does)."""
    configured = os.environ.get("SEQ2SEQ_MULTI30K")
    if configured:
        candidates = [Path(configured)]
    else:
        candidates = [REPO.parent / "shared" / "corpora" / "multi30k", MULTI30K_CACHE]
    for path in candidates:
        if all((path / multi30k_filename(*file)).is_file() for file in MULTI30K_TEST_FILES):
            return path
    if configured:
        pytest.fail(f"Multi30k not found in SEQ2SEQ_MULTI30K={configured}: it needs "
                    + ", ".join(multi30k_filename(*file) for file in MULTI30K_TEST_FILES))
    MULTI30K_CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(MULTI30K_CACHE / ".lock")):  # one download for all xdist workers
        try:
            for split, lang in MULTI30K_TEST_FILES:
                fetch_multi30k(split, lang, MULTI30K_CACHE)
        except DataError as error:
            pytest.fail(f"the tests that read Multi30k need its files: {error}; for the tests, "
                        "SEQ2SEQ_MULTI30K=DIR names that directory")
    return MULTI30K_CACHE


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], object]) -> Path:
    """A folder that `build` fills once per test run. Under pytest-xdist every worker runs the
    session fixtures; here the first worker to arrive builds the folder (in the run's temp dir,
    above the workers' own) while the others wait for it, then all of them read it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: its own temp dir
        path = tmp_path_factory.mktemp(name)
        build(path)
        return path
    shared = tmp_path_factory.getbasetemp().parent
    path, built = shared / name, shared / f"{name}.built"
    with FileLock(str(shared / f"{name}.lock")):
        if not built.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            built.touch()
    return path


@pytest.fixture(scope="session")
def build_once(tmp_path_factory):
    """`build_once(name, build) -> Path`: `built_once` for module fixtures whose output is a
    folder that tests only read (a trained run, a sweep), so that workers share it."""
    return lambda name, build: built_once(tmp_path_factory, name, build)


@pytest.fixture(scope="session")
def multi30k_prepared(multi30k_dir, tmp_path_factory):
    """Multi30k de-en prepared with the default settings (joint unigram 8k) in a temp data.root.

    Training the tokenizer takes seconds, so the test run shares one (the other workers read its
    cache).
    """
    from seq2seq.data.prepare import prepare_data

    def prepare(root: Path) -> object:
        return prepare_data(DataConfig(source=str(multi30k_dir), root=str(root)))

    return prepare(built_once(tmp_path_factory, "multi30k_root", prepare))


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
def trained_checkpoint(tiny_run, tmp_path_factory) -> Path:
    """The run dir of a tiny model (hidden 32) trained for 30 steps on the tiny corpus.

    Its `checkpoints/best.pt` is what the translate and evaluate commands load; it takes a few
    seconds to train, once per test run (tests only read it).
    """
    from seq2seq.training.setup import build_trainer

    cfg = compose_overrides([*tiny_run, "train.max_steps=30", "train.eval_every=30"])
    return built_once(tmp_path_factory, "trained_run",
                      lambda run_dir: build_trainer(cfg, run_dir).fit())


@pytest.fixture(scope="session")
def untrained_translator(trained_checkpoint):
    """Make a Translator with the trained checkpoint's tokenizer and config but an untrained
    model with another attention (e.g. multi-head, to test per-head output)."""
    import dataclasses

    import torch

    from seq2seq.checkpoint import load_checkpoint
    from seq2seq.config import to_object
    from seq2seq.data.tokenizer import Tokenizer
    from seq2seq.inference.translator import Translator
    from seq2seq.nn.model import build_model

    def make(attention: AttentionConfig) -> Translator:
        payload = load_checkpoint(trained_checkpoint)
        config = dataclasses.replace(to_object(payload["config"]), attention=attention)
        tokenizer = Tokenizer.from_bytes(payload["tokenizer"])
        torch.manual_seed(0)
        model = build_model(config.model, config.attention, tokenizer.src_vocab_size,
                            tokenizer.tgt_vocab_size)
        return Translator(model, tokenizer, config, torch.device("cpu"))

    return make


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    """`serve("--checkpoint", RUN, ...)`: the serve command on a free loopback port, healthy
    (a ServerProcess: `.url`, `.process`, `.output()`); every server is stopped at the end."""
    from commands import command_env
    from server_process import ServerError, ServerProcess

    logs = tmp_path_factory.mktemp("serve_logs")
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(args, logs / f"serve_{len(started)}.log", threads=1,
                               env=command_env())
        started.append(server)
        try:
            return server.__enter__()
        except ServerError as error:
            pytest.fail(str(error))

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def umask_022():
    """The usual umask, whatever the test process was started with (files 0644, folders 0755)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine waiting workers slow them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def run_command(monkeypatch, capfd, tmp_path):
    """`run_command(NAME, args, cwd=tmp_path, stdin=b"") -> Done`: `python scripts/NAME.py ARGS`
    run in this process, through the `main()` that the script calls (seq2seq.cli.NAME), with
    the environment of a started command (helpers/commands.py). A new process would spend 3-5 s
    importing what this one holds; tests start one where its boundary is what they test.

    The exit code is main()'s SystemExit, or 0; stdout and stderr are read from the file
    descriptors, so what native code writes counts too. Hydra's logging (a run's train.log and
    its console handler) is taken down after each command.
    """
    import importlib
    import io
    import logging
    import sys

    from commands import Done, command_env

    def run(name: str, args: Sequence[str], cwd: Path | None = None,
            stdin: bytes = b"") -> Done:
        main = importlib.import_module(f"seq2seq.cli.{name}").main
        env = command_env()
        for key in os.environ.keys() - env.keys():
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(cwd or tmp_path)
        monkeypatch.setattr(sys, "argv", [str(REPO / "scripts" / f"{name}.py"), *args])
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        capfd.readouterr()  # what the test printed before is not the command's
        try:
            main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        finally:
            for handler in [h for h in root.handlers if h not in handlers]:
                root.removeHandler(handler)
                handler.close()
            root.setLevel(level)
        out, err = capfd.readouterr()
        return Done(code, out, err)

    return run


@pytest.fixture
def refused_training(run_command):
    """`refused_training(args) -> stderr`: `python scripts/train.py ARGS`, run in this process
    from tmp_path, that must stop before Hydra starts with exit code 1 and one line on stderr."""

    def refused(args: Sequence[str]) -> str:
        done = run_command("train", args)
        assert done.returncode == 1 and done.stderr.startswith("error: ") \
            and done.stderr.count("\n") == 1, done.stderr
        return done.stderr

    return refused


@pytest.fixture(autouse=True)
def project_logger_restored():
    """The commands that tests run in-process (`translate.main(...)`) add their stderr handler
    to the "seq2seq" logger (cli.common.setup_logging); each test gets the logger back as it
    found it, so one test's handler never prints into another's output."""
    import logging

    logger = logging.getLogger("seq2seq")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
