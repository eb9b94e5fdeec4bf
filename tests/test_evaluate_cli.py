"""scripts/evaluate.py: scores with signatures on a split or on files, the same output as
translate.py with the same settings, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.cli import evaluate, translate
from seq2seq.training.setup import build_trainer


def printed_scores(stdout: str) -> dict[str, float]:
    """{"BLEU": ..., "chrF": ..., "BLEU lowercased": ...} from the printed table."""
    scores = {}
    for line in stdout.splitlines():
        if line.startswith(("BLEU ", "chrF ")):
            name, value, signature = line.split()[:3]
            assert signature.startswith("nrefs:1|case:")
            scores[name + (" lowercased" if "case:lc" in signature else "")] = float(value)
    return scores


def test_split_of_a_custom_corpus_prints_scores_signatures_and_writes_reports(
        trained_checkpoint, tiny_corpus_dir, tmp_path, capsys):
    hyps, report = tmp_path / "test.hyp", tmp_path / "report.json"
    evaluate.main(["--checkpoint", str(trained_checkpoint), "--split", "test", "--beam", "2",
                   "--output", str(hyps), "--json", str(report)])
    out = capsys.readouterr().out
    assert out.startswith("test: 50 sentences, beam 2")
    assert "lowercased" in out
    scores = printed_scores(out)
    written = json.loads(report.read_text())
    assert written["sentences"] == 50 and written["search"]["beam_size"] == 2
    assert written["signatures"]["bleu"].startswith("nrefs:1|case:mixed")
    assert scores == {"BLEU": round(written["bleu"], 2), "chrF": round(written["chrf"], 2),
                      "BLEU lowercased": round(written["bleu_lowercase"], 2)}
    # the scores are those of the hypotheses it wrote, against the split's references
    hypotheses = hyps.read_text(encoding="utf-8").splitlines()
    references = (tiny_corpus_dir / "tiny" / "test.en").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == 50
    assert written["bleu"] == pytest.approx(BLEU().corpus_score(hypotheses, [references]).score)
    assert written["chrf"] == pytest.approx(CHRF().corpus_score(hypotheses, [references]).score)


@pytest.mark.parametrize("beam", ["1", "3"])
def test_translate_gives_the_hypotheses_evaluate_scores(beam, trained_checkpoint, tiny_corpus_dir,
                                                        tmp_path, capsys):
    tiny = tiny_corpus_dir / "tiny"
    common = ["--checkpoint", str(trained_checkpoint), "--beam", beam, "--batch-size", "16"]
    evaluate.main([*common, "--split", "test", "--output", str(tmp_path / "evaluated")])
    split_scores = printed_scores(capsys.readouterr().out)
    evaluate.main([*common, "--src", str(tiny / "test.de"), "--ref", str(tiny / "test.en"),
                   "--output", str(tmp_path / "from_files")])
    assert printed_scores(capsys.readouterr().out) == split_scores
    translate.main([*common, "--input", str(tiny / "test.de"),
                    "--output", str(tmp_path / "translated")])
    evaluated = (tmp_path / "evaluated").read_text(encoding="utf-8")
    assert evaluated == (tmp_path / "translated").read_text(encoding="utf-8")
    assert evaluated == (tmp_path / "from_files").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def multi30k_checkpoint(multi30k_dir, compose, tiny_model_overrides, tmp_path_factory) -> Path:
    """A tiny model trained for a few steps on a slice of the real Multi30k (BLEU near 0)."""
    root = tmp_path_factory.mktemp("m30k_root")
    cfg = compose([
        *tiny_model_overrides, f"data.source={multi30k_dir}", f"data.root={root}",
        "data.max_train_pairs=1000", "data.tokenizer.vocab_size=500", "train.max_steps=8",
        "train.eval_every=8"])
    run_dir = tmp_path_factory.mktemp("m30k_run")
    build_trainer(cfg, run_dir).fit()
    return run_dir


def test_real_test_2016_flickr_split(multi30k_checkpoint, multi30k_dir, tmp_path, capsys):
    evaluate.main(["--checkpoint", str(multi30k_checkpoint), "--split", "test_2016_flickr",
                   "--beam", "1", "--data-source", str(multi30k_dir),
                   "--data-root", str(tmp_path / "fresh_root"), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert out.startswith("test_2016_flickr: 1,000 sentences, beam 1")
    assert set(printed_scores(out)) == {"BLEU", "chrF", "BLEU lowercased"}
    assert json.loads((tmp_path / "r.json").read_text())["sentences"] == 1000
    # the split was fetched (sha256-verified) into the new root; no tokenizer was trained there
    assert sorted(p.name for p in (tmp_path / "fresh_root").rglob("*.gz")) == [
        "test_2016_flickr.de.gz", "test_2016_flickr.en.gz"]
    assert not list((tmp_path / "fresh_root").rglob("*.model"))


def test_data_source_finds_the_files_of_a_moved_corpus(trained_checkpoint, tiny_corpus_dir,
                                                       tmp_path, capsys):
    payload = load_checkpoint(trained_checkpoint)
    payload["config"]["data"]["test_files"]["tsv"] = str(tmp_path / "gone" / "test.tsv")
    del payload["format_version"]
    save_checkpoint(payload, tmp_path / "moved.pt")
    args = ["--checkpoint", str(tmp_path / "moved.pt"), "--split", "test", "--beam", "1"]
    with pytest.raises(SystemExit) as stop:
        evaluate.main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "test.tsv" in err and "--data-source DIR" in err
    evaluate.main([*args, "--data-source", str(tiny_corpus_dir / "tiny")])
    assert capsys.readouterr().out.startswith("test: 50 sentences")


@pytest.mark.parametrize("args, message", [
    (["--split", "test_2016_flickr"], "a custom corpus has no split 'test_2016_flickr'"),
    (["--split", "val", "--data-source", "/nonexistent"], "valid_files.tsv='/nonexistent/val.tsv'"),
    (["--src", "{tiny}/test.de", "--ref", "{tiny}/train.en"], "has 50 lines but"),
])
def test_data_errors_are_one_line_errors(args, message, trained_checkpoint, tiny_corpus_dir,
                                         capsys):
    args = [arg.format(tiny=tiny_corpus_dir / "tiny") for arg in args]
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--checkpoint", str(trained_checkpoint), *args])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.startswith("error: ") and message in err


def test_checkpoint_errors_are_one_line_errors(tmp_path, run_command):
    done = run_command("evaluate", ["--checkpoint", str(tmp_path / "no_run"), "--split", "test"])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: no checkpoint 'best.pt' in directory") or \
        done.stderr.startswith("error: checkpoint not found")


def test_the_trainers_test_pass_is_evaluate_and_keeps_an_empty_line_empty(
        compose, tiny_run, tiny_corpus_dir, tmp_path, capsys):
    """One code path: the hypotheses a run writes for its test split are what evaluate.py gives
    for that split, and an empty source line gives an empty translation in both."""
    lines = (tiny_corpus_dir / "tiny" / "test.tsv").read_text(encoding="utf-8").splitlines()
    lines.insert(2, "\tA dog runs.")  # no source text
    test_file = tmp_path / "test.tsv"
    test_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    cfg = compose([*tiny_run, "train.max_steps=10", "train.eval_every=10",
                   "data.max_eval_pairs=null", f"data.test_files.tsv={test_file}"])
    build_trainer(cfg, run_dir).fit()
    trained = (run_dir / "test.hyp.txt").read_text(encoding="utf-8").splitlines()
    evaluate.main(["--checkpoint", str(run_dir), "--split", "test", "--beam", "1",
                   "--output", str(tmp_path / "evaluated")])
    capsys.readouterr()
    assert len(trained) == len(lines) and trained[2] == ""
    assert (tmp_path / "evaluated").read_text(encoding="utf-8").splitlines() == trained
    # and beside them the references, for the report's significance test
    references = (run_dir / "test.ref.txt").read_text(encoding="utf-8").splitlines()
    assert references == [line.split("\t")[1] for line in lines]


@pytest.mark.parametrize("option", ["--json", "--output"])
def test_an_output_under_a_file_is_one_line_before_any_work(tmp_path, option, run_command):
    (tmp_path / "file").write_text("x")
    done = run_command("evaluate", ["--checkpoint", str(tmp_path / "no_such_run"), "--split",
                                    "val", option, str(tmp_path / "file" / "out")])
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {option} ") and "is a file" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--output", "x", "--json", "x"], "--output and --json name the same file"),
    (["--output", "b"], "--ref and --output name the same file"),  # once replaced the references
    (["--json", "a"], "--src and --json name the same file"),
])
def test_an_output_may_not_name_another_file_of_the_command(tmp_path, capsys, args, message):
    paths = {"a": tmp_path / "a", "b": tmp_path / "b", "x": tmp_path / "x"}
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--checkpoint", "RUN", "--src", str(paths["a"]), "--ref", str(paths["b"]),
                       *[str(paths.get(arg, arg)) for arg in args]])
    assert stop.value.code == 2 and message in capsys.readouterr().err



@pytest.mark.parametrize("option, words", [
    (["--beam", "100000"], "argument --beam: must be in [1, 100], got 100000"),
    (["--threads", "100000"], "argument --threads: must be in [1, "),
])
def test_a_beam_or_threads_past_the_cap_are_usage_errors(capsys, option, words):
    """They once ran for minutes, and crashed OpenMP (a segfault, rc 139)."""
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--checkpoint", "RUN", "--split", "val", *option])
    assert stop.value.code == 2 and words in capsys.readouterr().err
