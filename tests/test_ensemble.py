"""Ensembles: several checkpoints decode as one by averaging log-probabilities at every step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.cli import translate
from seq2seq.config import SubwordModel
from seq2seq.data.corpus import read_aligned
from seq2seq.data.tokenizer import load_or_train_tokenizer
from seq2seq.data.training_pairs import TrainingPairs
from seq2seq.errors import CheckpointError
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.translator import Translator

SENTENCES = ["Eine Frau singt.", "Ein Mann läuft vor dem Haus.", "", "Zwei Hunde spielen.",
             "Eine alte Katze schläft in der Küche und ein Kind springt."]


@pytest.fixture(scope="module")
def other_seed(tiny_run, compose, build_once):
    """A second tiny model: the same data and settings as trained_checkpoint, another seed."""
    from seq2seq.training.setup import build_trainer

    cfg = compose([*tiny_run, "train.max_steps=30", "train.eval_every=30", "seed=7"])
    return build_once("other_seed", lambda run_dir: build_trainer(cfg, run_dir).fit())


def hypotheses(translator: Translator, beam: int) -> list[tuple[list[int], float]]:
    found = translator.search(SENTENCES, translator.settings(beam_size=beam, nbest=beam))
    return [(hyp.tokens, hyp.score) for one in found for hyp in one.hypotheses]


@pytest.mark.parametrize("beam", [1, 3])
def test_an_ensemble_of_one_model_is_that_model(trained_checkpoint, beam):
    single = Translator.from_checkpoint(trained_checkpoint, device="cpu")
    one = Translator(Ensemble([single.model]), single.tokenizer, single.config, single.device)
    expected, found = hypotheses(single, beam), hypotheses(one, beam)
    assert [tokens for tokens, _ in found] == [tokens for tokens, _ in expected]
    torch.testing.assert_close([score for _, score in found],
                               [score for _, score in expected], rtol=0, atol=1e-4)


@pytest.mark.parametrize("beam", [1, 3])
def test_a_model_ensembled_with_itself_translates_as_it_does(trained_checkpoint, beam):
    single = Translator.from_checkpoint(trained_checkpoint, device="cpu")
    twice = Translator.from_checkpoint([trained_checkpoint, trained_checkpoint], device="cpu")
    assert isinstance(twice.model, Ensemble) and len(twice.checkpoints) == 2
    settings = single.settings(beam_size=beam)
    assert twice.translate(SENTENCES, settings) == single.translate(SENTENCES, settings)


def test_each_step_scores_the_mean_of_the_members_log_probabilities(trained_checkpoint,
                                                                    other_seed):
    first = Translator.from_checkpoint(trained_checkpoint, device="cpu").model
    second = Translator.from_checkpoint(other_seed, device="cpu").model
    ensemble = Ensemble([first, second]).eval()
    src = torch.tensor([[5, 9, 12, 3], [7, 8, 3, 0]])
    lengths = torch.tensor([4, 3])
    prev = torch.tensor([2, 2])
    with torch.inference_mode():
        memory, state = ensemble.start(src, lengths)
        features, _, weights = ensemble.decoder.step_features(prev, state, memory)
        mixed = ensemble.decoder.output_layer(features)
        expected = []
        for member in (first, second):
            member_memory, member_state = member.start(src, lengths)
            logits, _, member_weights = member.decoder.step(prev, member_state, member_memory)
            expected.append((logits.log_softmax(dim=-1), member_weights))
    torch.testing.assert_close(mixed, (expected[0][0] + expected[1][0]) / 2)
    torch.testing.assert_close(weights, (expected[0][1] + expected[1][1]) / 2)


def test_two_models_keep_n_lines_nbest_and_attention(trained_checkpoint, other_seed):
    ensemble = Translator.from_checkpoint([trained_checkpoint, other_seed], device="cpu")
    found = ensemble.search(SENTENCES, ensemble.settings(beam_size=3, nbest=2, attention=True))
    assert len(found) == len(SENTENCES) and found[2].hypotheses == []
    for line in (found[0], found[1], found[3], found[4]):
        assert len(line.hypotheses) == 2
        assert line.hypotheses[0].score >= line.hypotheses[1].score
        heads, rows, columns = line.weights().shape
        assert (rows, columns) == (len(line.hypotheses[0].tokens) + 1, len(line.src_pieces) + 1)
        torch.testing.assert_close(line.weights().sum(dim=-1), torch.ones(heads, rows))


def test_the_translate_command_takes_several_checkpoints(trained_checkpoint, other_seed,
                                                         tmp_path, capsys):
    source = tmp_path / "in.de"
    source.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    translate.main(["--checkpoint", str(trained_checkpoint), "--checkpoint", str(other_seed),
                    "--input", str(source), "--beam", "2", "--plot-attention",
                    str(tmp_path / "plots")])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SENTENCES) and lines[2] == ""
    expected = Translator.from_checkpoint([trained_checkpoint, other_seed], device="cpu")
    assert lines == expected.translate(SENTENCES, expected.settings(beam_size=2))
    assert len(list((tmp_path / "plots").glob("*.png"))) == len(SENTENCES) - 1


def test_models_with_other_subword_models_are_refused(trained_checkpoint, tiny_data_config,
                                                      tiny_corpus_dir, tmp_path):
    payload = load_checkpoint(trained_checkpoint)
    bpe = dataclasses.replace(tiny_data_config, tokenizer=dataclasses.replace(
        tiny_data_config.tokenizer, model_type=SubwordModel.bpe))  # as many pieces, other ones
    tiny = tiny_corpus_dir / "tiny"
    pairs = read_aligned(tiny / "train.de", tiny / "train.en")
    payload["tokenizer"] = load_or_train_tokenizer(bpe, TrainingPairs(pairs), tmp_path).to_bytes()
    save_checkpoint(payload, tmp_path / "bpe.pt")
    with pytest.raises(CheckpointError, match="different subword models: the models of an "
                                              "ensemble must share one vocabulary"):
        Translator.from_checkpoint([trained_checkpoint, tmp_path / "bpe.pt"], device="cpu")


def test_an_int8_ensemble_quantizes_every_member(trained_checkpoint, other_seed):
    int8 = Translator.from_checkpoint([trained_checkpoint, other_seed], quantize="int8")
    layers = [member.decoder.output_layer.linear for member in int8.model.members]
    assert all(type(layer).__module__.startswith("torch.ao.nn.quantized") for layer in layers)
    translations = int8.translate(SENTENCES, int8.settings(beam_size=2))
    assert len(translations) == len(SENTENCES) and translations[2] == ""
    assert all(translations[i] for i in (0, 1, 3, 4))
