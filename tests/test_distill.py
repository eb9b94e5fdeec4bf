"""scripts/distill.py: one translation per training pair, as translate.py gives them, in a corpus
that data=custom trains on; a stopped run goes on without decoding its finished batches again."""

from __future__ import annotations

import json
import os
import signal

import pytest

from seq2seq.cli.distill import JOURNAL, RECORD
from seq2seq.data.prepare import read_split
from seq2seq.inference.translator import Translator

BEAM = "2"


def lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def teacher(trained_checkpoint):
    """The tiny trained run, and its training split as the distilled corpus must hold it."""
    translator = Translator.from_checkpoint(trained_checkpoint, device="cpu")
    return trained_checkpoint, translator, read_split(translator.config.data, "train")


def expected_translations(translator, pairs, batch_size=128) -> list[str]:
    settings = translator.settings(beam_size=int(BEAM))
    return translator.translate([src for src, _ in pairs], settings, batch_size)


def test_a_corpus_of_the_teachers_translations_that_a_student_trains_on(
        teacher, tiny_model_overrides, tmp_path, run_command):
    run, translator, train = teacher
    out = tmp_path / "distilled"
    done = run_command("distill", ["--checkpoint", str(run), "--output", str(out),
                                   "--beam", BEAM])
    assert done.returncode == 0, done.stderr
    assert "experiment=distill_cpu40 data.source=" in done.stdout
    assert lines(out / "train.de") == [src for src, _ in train]
    assert lines(out / "train.en") == expected_translations(translator, train)
    for split, name in (("valid", "valid"), ("test", "test")):
        pairs = read_split(translator.config.data, name)
        assert lines(out / f"{split}.de") == [src for src, _ in pairs]
        assert lines(out / f"{split}.en") == [tgt for _, tgt in pairs]  # the references
    record = json.loads((out / RECORD).read_text())
    assert record["corpus"]["train_pairs"] == len(train) == 400
    assert record["search"]["beam_size"] == int(BEAM)
    assert not (out / JOURNAL).exists()

    student = tmp_path / "student"
    done = run_command("train", ["experiment=distill_cpu40", f"data.source={out}",
                                 *tiny_model_overrides, "data.tokenizer.vocab_size=64",
                                 f"data.root={tmp_path / 'root'}", "train.max_steps=3",
                                 f"hydra.run.dir={student}"])
    assert done.returncode == 0, done.stderr
    results = json.loads((student / "results.json").read_text())
    assert results["config"]["data"]["train_files"]["tgt"] == str(out / "train.en")
    assert results["data"]["splits"]["train"]["pairs"] > 0 and "bleu" in results["test"]


def test_mixed_references_give_each_source_twice(teacher, tmp_path, run_command):
    run, translator, train = teacher
    out = tmp_path / "mixed"
    done = run_command("distill", ["--checkpoint", str(run), "--output", str(out),
                                   "--beam", BEAM, "--mix-references"])
    assert done.returncode == 0, done.stderr
    sources = [src for src, _ in train]
    assert lines(out / "train.de") == sources + sources
    assert lines(out / "train.en") == \
        expected_translations(translator, train) + [tgt for _, tgt in train]


def test_a_run_stopped_by_sigterm_goes_on_without_decoding_its_batches_again(
        teacher, tmp_path, run_command, monkeypatch):
    run, translator, train = teacher
    out = tmp_path / "distilled"
    args = ["--checkpoint", str(run), "--output", str(out), "--beam", BEAM, "--batch-size", "16"]
    real_search = Translator.search_encoded
    calls = []

    def search_then_sigterm(self, *args, **kwargs):
        calls.append(len(args[0]))
        if len(calls) == 3:  # the third batch: SIGTERM arrives while it is decoded
            os.kill(os.getpid(), signal.SIGTERM)
        return real_search(self, *args, **kwargs)

    monkeypatch.setattr(Translator, "search_encoded", search_then_sigterm)
    stopped = run_command("distill", args)
    assert stopped.returncode == 128 + signal.SIGTERM
    assert "stopped after 32 of 400 lines" in stopped.stdout
    assert len(lines(out / JOURNAL)) == 1 + 2  # the fingerprint, then the 2 finished batches
    assert not (out / "train.en").exists()

    calls.clear()
    monkeypatch.setattr(Translator, "search_encoded", lambda self, *args, **kwargs: (
        calls.append(len(args[0])), real_search(self, *args, **kwargs))[1])
    done = run_command("distill", args)
    assert done.returncode == 0, done.stderr
    assert len(calls) == 400 // 16 - 2  # the finished batches were read from the journal
    assert lines(out / "train.en") == expected_translations(translator, train, batch_size=16)


def test_a_journal_cut_mid_record_goes_on_and_another_works_journal_is_refused(
        teacher, tmp_path, run_command, monkeypatch):
    run, translator, train = teacher
    out = tmp_path / "distilled"
    args = ["--checkpoint", str(run), "--output", str(out), "--beam", BEAM, "--batch-size", "16"]
    real_search = Translator.search_encoded

    def interrupted(self, *args, **kwargs):
        if len(lines(out / JOURNAL)) == 3:
            raise KeyboardInterrupt
        return real_search(self, *args, **kwargs)

    monkeypatch.setattr(Translator, "search_encoded", interrupted)
    assert run_command("distill", args).returncode == 130
    monkeypatch.setattr(Translator, "search_encoded", real_search)
    with (out / JOURNAL).open("ab") as journal:
        journal.write(b'{"lines": [[0, "a half-writ')  # a kill in the middle of a write

    other = run_command("distill", [*args[:-3], "1", *args[-2:]])  # another beam
    assert other.returncode == 1
    assert other.stderr.startswith("error: ") and "journal of other work" in other.stderr

    done = run_command("distill", args)
    assert done.returncode == 0, done.stderr
    assert lines(out / "train.en") == expected_translations(translator, train, batch_size=16)
