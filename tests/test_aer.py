"""AER against gold alignments: gold files read with sure and possible links, the scores of a
hand computation, one-line refusals of bad gold files, and `evaluate.py --gold-alignments`."""

from __future__ import annotations

import json

import pytest
import torch
from alignments import diagonal_links, tsv_pairs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.analysis.aer import (
    GoldLinks,
    aligner_of,
    aligner_record,
    alignment_record,
    alignment_scores,
    read_gold,
)
from seq2seq.analysis.sentence_figures import figure, read_figures
from seq2seq.errors import DataError
from seq2seq.inference.forced import forced_alignments, forced_attention
from seq2seq.inference.translator import Translator

SOURCES = ["a b c", "d e", "f g h i"]
REFERENCES = ["x y z", "u v", "p q r"]
GOLD = "0-0 1?1 2-2-p\n0-0 1-1\n0-0 1-1 2?1 3-2\n"


def test_gold_links_are_sure_or_possible_and_sure_ones_are_possible(tmp_path):
    path = tmp_path / "gold.align"
    path.write_text(GOLD)
    gold = read_gold(path, SOURCES, REFERENCES)
    assert gold[0] == GoldLinks(frozenset({(0, 0)}), frozenset({(0, 0), (1, 1), (2, 2)}))
    assert gold[1].sure == gold[1].possible == {(0, 0), (1, 1)}
    assert gold[2].sure == {(0, 0), (1, 1), (3, 2)} and gold[2].possible - gold[2].sure == {(2, 1)}


def test_scores_equal_a_hand_computation(tmp_path):
    path = tmp_path / "gold.align"
    path.write_text(GOLD)
    predicted = [[(0, 0), (1, 1), (0, 2)],  # A∩S 1, A∩P 2
                 [(0, 0), (0, 1)],  # A∩S 1, A∩P 1
                 [(0, 0), (2, 1), (3, 2)]]  # A∩S 2, A∩P 3
    scores = alignment_scores(predicted, read_gold(path, SOURCES, REFERENCES))
    # |A| 8, |S| 6, |P| 9, |A∩S| 4, |A∩P| 6
    assert (scores.links, scores.sure, scores.possible) == (8, 6, 9)
    assert scores.precision == pytest.approx(6 / 8)
    assert scores.recall == pytest.approx(4 / 6)
    assert scores.aer == pytest.approx(1 - (4 + 6) / (8 + 6))
    perfect = alignment_scores([sorted(g.sure) for g in read_gold(path, SOURCES, REFERENCES)],
                               read_gold(path, SOURCES, REFERENCES))
    assert (perfect.aer, perfect.precision, perfect.recall) == (0.0, 1.0, 1.0)


@pytest.mark.parametrize("gold, message", [
    ("0-0\n0-0\n", "gold.align has 2 lines but there are 3 references"),
    ("0-0\n0-0 1:1\n0-0\n", "gold.align line 2: '1:1' is not a link"),
    ("0-0\n0-0\n0-0 1-x\n", "gold.align line 3: '1-x' is not a link"),
    ("0-0\n0-2\n0-0\n", "gold.align line 2: 0-2 is out of range: the source has 2 words and "
                        "the reference 2"),
    ("3?0\n0-0\n0-0\n", "gold.align line 1: 3?0 is out of range"),
    ("0?0\n\n1-1-p\n", "gold.align holds no sure links"),
])
def test_bad_gold_files_are_refused_naming_the_line(gold, message, tmp_path):
    path = tmp_path / "gold.align"
    path.write_text(gold)
    with pytest.raises(DataError, match="^" + str(tmp_path).replace("\\", "\\\\")) as error:
        read_gold(path, SOURCES, REFERENCES)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.fixture(scope="module")
def tiny_test(tiny_corpus_dir):
    tiny = tiny_corpus_dir / "tiny"
    return tiny / "test.de", tiny / "test.en"


def diagonal_gold(sources: list[str], references: list[str]) -> str:
    """Sure links k-k and a possible k?k+1, as far as both sentences reach."""
    lines = []
    for src, ref in zip(sources, references, strict=True):
        n, m = len(src.split()), len(ref.split())
        links = [f"{k}-{k}" for k in range(min(n, m))]
        links += [f"{k}?{k + 1}" for k in range(min(n, m - 1))]
        lines.append(" ".join(links))
    return "\n".join(lines) + "\n"


def test_forced_alignments_link_every_reference_word_once(trained_checkpoint, tiny_test):
    torch.set_num_threads(1)
    translator = Translator.from_checkpoint(trained_checkpoint, device="cpu")
    sources = tiny_test[0].read_text(encoding="utf-8").splitlines()[:6]
    references = tiny_test[1].read_text(encoding="utf-8").splitlines()[:6]
    found = forced_alignments(translator, sources, references, batch_size=4)
    for links, src, ref in zip(found, sources, references, strict=True):
        assert sorted(j for _, j in links) == list(range(len(ref.split())))
        assert all(0 <= i < len(src.split()) for i, _ in links)
    # batching changes nothing; an empty side has no words to link
    assert forced_alignments(translator, sources, references, batch_size=1) == found
    assert forced_alignments(translator, ["", sources[0], ""], [references[0], "", ""]) \
        == [[], [], []]


def test_evaluate_prints_aer_beside_bleu_and_in_the_json(trained_checkpoint, tiny_test,
                                                          tmp_path, run_command):
    src, ref = tiny_test
    sources = src.read_text(encoding="utf-8").splitlines()
    references = ref.read_text(encoding="utf-8").splitlines()
    gold = tmp_path / "gold.align"
    gold.write_text(diagonal_gold(sources, references))
    done = run_command("evaluate", ["--checkpoint", str(trained_checkpoint), "--src", str(src),
                                    "--ref", str(ref), "--beam", "1", "--gold-alignments",
                                    str(gold), "--json", str(tmp_path / "report.json")])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("BLEU ") and lines[-1].startswith("AER ")
    report = json.loads((tmp_path / "report.json").read_text())["alignment"]
    translator = Translator.from_checkpoint(trained_checkpoint, device="cpu")
    expected = alignment_scores(forced_alignments(translator, sources, references),
                                read_gold(gold, sources, references))
    assert report == {"reference": str(gold), "aligner": None, **expected.as_dict()}
    assert lines[-1].split()[:6] == ["AER", f"{expected.aer:.4f}", "precision",
                                     f"{expected.precision:.4f}", "recall",
                                     f"{expected.recall:.4f}"]


def test_scores_against_a_reference_aligners_links_are_called_agreement(
        trained_checkpoint, tiny_test, tmp_path, run_command):
    src, ref = tiny_test
    sources = src.read_text(encoding="utf-8").splitlines()
    references = ref.read_text(encoding="utf-8").splitlines()
    links = tmp_path / "val.align"
    links.write_text(diagonal_gold(sources, references))
    aligner_record(links).write_text(json.dumps({"aligner": "eflomal", "version": "2.0.0",
                                                 "symmetrisation": "intersection"}))
    done = run_command("evaluate", ["--checkpoint", str(trained_checkpoint), "--src", str(src),
                                    "--ref", str(ref), "--beam", "1", "--gold-alignments",
                                    str(links), "--json", str(tmp_path / "report.json")])
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert "alignment" not in report
    agreement = report["agreement"]
    assert agreement["aligner"] == "eflomal (intersection)"
    assert agreement["agreement"] == pytest.approx(1 - agreement["aer"])
    assert done.stdout.splitlines()[-1].startswith(
        f"agreement with eflomal (intersection) {agreement['agreement']:.4f} (1 - AER; AER ")
    assert alignment_record(links, aligner_of(links), alignment_scores([[(0, 0)]], [GoldLinks(
        frozenset({(0, 0)}), frozenset({(0, 0)}))]))[0] == "agreement"


def test_a_damaged_aligner_record_stops_before_anything_is_scored(tmp_path):
    links = tmp_path / "val.align"
    links.write_text("0-0\n")
    aligner_record(links).write_text("{")
    with pytest.raises(DataError, match=r"val.align.aligner.json does not say which aligner"):
        aligner_of(links)


def test_a_bad_gold_file_is_one_line_before_translating(trained_checkpoint, tiny_test, tmp_path,
                                                        run_command):
    src, ref = tiny_test
    gold = tmp_path / "gold.align"
    gold.write_text("0-0\n")
    done = run_command("evaluate", ["--checkpoint", str(trained_checkpoint), "--src", str(src),
                                    "--ref", str(ref), "--gold-alignments", str(gold)])
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"error: {gold} has 1 lines but there are 50 references: it needs " \
                          "one alignment line per sentence pair\n"


def test_forcing_the_models_own_translation_gives_its_search_attention(trained_checkpoint,
                                                                        tiny_test):
    """Teacher forcing on the subwords greedy search chose reproduces the search's attention:
    the rows and columns forced decoding keeps are those the translator aligns."""
    torch.set_num_threads(1)
    translator = Translator.from_checkpoint(trained_checkpoint, device="cpu")
    sources = tiny_test[0].read_text(encoding="utf-8").splitlines()[:4]
    found = translator.search(sources, translator.settings(1, attention=True))
    src_ids = translator.tokenizer.encode_src(sources)
    tokens = [t.hypotheses[0].tokens for t in found]
    for k, forced in forced_attention(translator, src_ids, tokens, batch_size=4):
        searched = found[k].weights()  # (heads, T + 1, S + 1)
        assert forced.shape == searched.shape
        torch.testing.assert_close(forced, searched, atol=1e-5, rtol=1e-4)


def test_forced_alignments_for_every_scorer(scorer, attention_config, untrained_translator,
                                            tiny_test):
    translator = untrained_translator(attention_config)
    sources = tiny_test[0].read_text(encoding="utf-8").splitlines()[:3]
    references = tiny_test[1].read_text(encoding="utf-8").splitlines()[:3]
    for links, ref in zip(forced_alignments(translator, sources, references), references,
                          strict=True):
        assert sorted(j for _, j in links) == list(range(len(ref.split())))


def test_a_run_scores_its_final_attention_against_data_valid_alignments(
        tiny_run, tiny_corpus_dir, tmp_path, run_command):
    links = tmp_path / "val.align"
    # the whole split
    links.write_text(diagonal_links(tsv_pairs(tiny_corpus_dir / "tiny" / "val.tsv")))
    run_dir = tmp_path / "run"
    done = run_command("train", [*tiny_run, "train.max_steps=4", f"hydra.run.dir={run_dir}",
                                 f"data.valid_alignments={links}"])
    assert done.returncode == 0, done.stderr[-3000:]
    alignment = json.loads((run_dir / "results.json").read_text())["valid"]["alignment"]
    assert alignment["reference"] == str(links) and alignment["aligner"] is None
    # the evaluation at step 4 scored the same model from its val loss pass
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    assert [e.step for e in events.Scalars("1_val/aer")] == [4]
    assert events.Scalars("1_val/aer")[0].value == pytest.approx(alignment["aer"], abs=1e-6)
    assert "val attention (forced on the references)" in (run_dir / "train.log").read_text()
    # the same figures sentence by sentence, for the report's significance marks
    results = json.loads((run_dir / "results.json").read_text())["valid"]
    table = read_figures(run_dir / "val.attention.tsv")
    assert len(table["links"]) == 10
    assert figure(table, "val_aer") == pytest.approx(alignment["aer"])
    assert figure(table, "val_entropy") == pytest.approx(results["attention"]["entropy"])
    assert 0 <= alignment["aer"] <= 1 and alignment["links"] > 0
    # data.max_eval_pairs=10: the first 10 lines' sure links, not the file's
    assert alignment["sure"] == sum(len(line.split())
                                    for line in links.read_text().splitlines()[:10])


def test_a_bad_valid_alignments_file_stops_the_run_before_training(tiny_run, tmp_path,
                                                                    run_command):
    links = tmp_path / "val.align"
    links.write_text("0-0\n")
    run_dir = tmp_path / "run"
    done = run_command("train", [*tiny_run, "train.max_steps=4", f"hydra.run.dir={run_dir}",
                                 f"data.valid_alignments={links}"])
    assert done.returncode == 1
    assert f"{links} has 1 lines but there are 10 references" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (run_dir / "checkpoints").exists()
