"""`python scripts/prepare_data.py`, run as a user would: statistics, or one line of error.

The README's command (Multi30k) runs in a process of its own, the others in this one
(`run_command`)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from commands import Done, command_env

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"


def run_prepare(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=command_env(),
                          capture_output=True, text=True, timeout=300)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def assert_clean_failure(done: subprocess.CompletedProcess | Done, message: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("error: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_multi30k_import_prints_statistics(multi30k_dir, tmp_path):
    root = tmp_path / "data"
    done = run_prepare(["data=multi30k_de_en", f"data.source={multi30k_dir}", f"data.root={root}",
                        "data.max_train_pairs=2000", "data.tokenizer.vocab_size=1000"],
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["train", "2,000"] for line in lines)
    assert any(line.split()[:2] == ["val", "1,014"] for line in lines)
    assert any(line.split()[:2] == ["test_2016_flickr", "1,000"] for line in lines)
    assert "train pairs dropped: 0" in done.stdout
    assert "vocabulary: joint, src 1,000, tgt 1,000" in done.stdout
    assert "padding efficiency: 0." in done.stdout
    assert any("src length: mean p50/95/99 max" in line for line in lines)
    assert lines[-1].startswith("prepared in ") and "peak memory (RSS)" in lines[-1]
    # the corpus and tokenizer land under data.root, and Hydra writes no run dir or log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert len(list(root.glob("multi30k.de-en/spm-joint-unigram-1000-*/joint.model"))) == 1
    assert len(list((root / "multi30k" / "raw").iterdir())) == 6


def test_tiny_custom_corpus(tiny_data_overrides, run_command, tmp_path):
    done = run_command("prepare_data", [*tiny_data_overrides, f"data.root={tmp_path / 'data'}"])
    assert done.returncode == 0, done.stderr
    assert "corpus tiny.de-en (de->en)" in done.stdout
    assert any(line.split()[:2] == ["train", "400"] for line in done.stdout.splitlines())


def test_wrong_checksum(tiny_corpus_dir, run_command, tmp_path):
    # tests/data/multi30k has Multi30k's file names but not its content
    done = run_command("prepare_data", ["data=multi30k_de_en",
                                        f"data.source={tiny_corpus_dir / 'multi30k'}",
                                        f"data.root={tmp_path / 'data'}"])
    assert_clean_failure(done, "checksum mismatch for train.de.gz")
    assert "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6" in done.stderr
    assert files_under(tmp_path) == []


def test_missing_multi30k_file(run_command, tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_command("prepare_data", ["data=multi30k_de_en", f"data.source={tmp_path / 'empty'}",
                                        f"data.root={tmp_path / 'data'}"])
    assert_clean_failure(done, "train.de.gz not found")
    assert "https://raw.githubusercontent.com/multi30k/dataset/" in done.stderr
    assert files_under(tmp_path) == []


@pytest.fixture
def broken_corpus(tmp_path, tiny_corpus_dir) -> Path:
    """Copies of the tiny corpus: a truncated .gz, and a target file one line short."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data = (tiny_corpus_dir / "multi30k" / "train.de.gz").read_bytes()
    (corpus / "truncated.de.gz").write_bytes(data[: len(data) // 2])
    (corpus / "train.de.gz").write_bytes(data)
    lines = gzip.decompress((tiny_corpus_dir / "multi30k" / "train.en.gz").read_bytes())
    (corpus / "short.en").write_bytes(lines[: lines.rindex(b"\n", 0, -1) + 1])
    return corpus


@pytest.mark.parametrize(
    ("src", "tgt", "message"),
    [
        ("truncated.de.gz", "short.en", "truncated.de.gz is a truncated or corrupt gzip file"),
        ("train.de.gz", "short.en", "train.de.gz has 400 lines but"),
    ],
)
def test_broken_custom_files(broken_corpus, tiny_data_overrides, run_command, tmp_path, src, tgt,
                             message):
    before = files_under(tmp_path)
    done = run_command("prepare_data", [*tiny_data_overrides, f"data.root={tmp_path / 'data'}",
                                        f"data.train_files.src={broken_corpus / src}",
                                        f"data.train_files.tgt={broken_corpus / tgt}"])
    assert_clean_failure(done, message)
    if "lines but" in message:
        assert "short.en has 399" in done.stderr
    assert files_under(tmp_path) == before


def test_invalid_config_value(run_command, tmp_path):
    done = run_command("prepare_data", ["data.max_len=0", f"data.root={tmp_path / 'data'}"])
    assert_clean_failure(done, "data.max_len=0 is invalid")


def test_help_is_this_commands_own_not_the_training_help(run_command):
    code, out, _ = run_command("prepare_data", ["--help"])
    assert code == 0
    assert out.startswith("seq2seq-prepare (python scripts/prepare_data.py): fetch and verify")
    assert "data: custom, multi30k_cs_en" in out and "seq2seq-train (" not in out
