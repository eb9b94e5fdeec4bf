"""Translator: a checkpoint becomes a ready model; N lines in give N results out, in order."""

from __future__ import annotations

import logging
import re

import matplotlib.image
import pytest
import torch

from seq2seq.analysis.plots import save_attention_pngs
from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.config import (
    CPU_THREADS,
    AdditiveAttentionConfig,
    MultiHeadAttentionConfig,
)
from seq2seq.errors import CheckpointError
from seq2seq.inference.translator import Translator

SENTENCES = ["Eine Frau singt.", "Ein Mann läuft vor dem Haus.", "Zwei Hunde spielen.",
             "Eine alte Katze schläft in der Küche und ein Kind springt."]


@pytest.fixture(scope="module")
def translator(trained_checkpoint) -> Translator:
    torch.set_num_threads(1)
    return Translator.from_checkpoint(trained_checkpoint, device="cpu")


def test_loads_a_run_dir_or_a_file_into_an_eval_mode_model(translator, trained_checkpoint):
    assert not translator.model.training
    assert translator.device == torch.device("cpu")
    assert translator.config.model.hidden_size == 32
    assert translator.checkpoints == [trained_checkpoint / "checkpoints" / "best.pt"]
    from_file = Translator.from_checkpoint(translator.checkpoints[0], device="cpu")
    assert from_file.translate(SENTENCES[:2]) == translator.translate(SENTENCES[:2])


def test_settings_default_to_the_checkpoints_train_config(translator):
    settings = translator.settings(beam_size=3)
    train = translator.config.train
    assert (settings.beam_size, settings.length_penalty, settings.max_len_ratio) == (
        3, train.length_penalty, train.max_len_ratio)
    assert settings.max_src_len == translator.config.data.max_len
    assert translator.settings(length_penalty=0.0, max_len_ratio=0.5).length_penalty == 0.0
    with pytest.raises(ValueError, match="nbest"):
        translator.settings(beam_size=2, nbest=3)


def test_every_line_gives_one_result_in_order_whatever_the_batching(translator):
    lines = SENTENCES + ["", SENTENCES[0]]
    settings = translator.settings(beam_size=2)
    together = translator.translate(lines, settings, batch_size=128)
    one_by_one = [translator.translate([line], settings)[0] for line in lines]
    in_pairs = translator.translate(lines, settings, batch_size=2)
    assert len(together) == len(lines)
    assert together == one_by_one == in_pairs
    assert together[4] == "" and together[5] == together[0]


def test_empty_lines_do_not_run_the_model(translator, monkeypatch):
    calls = []
    real_start = translator.model.start
    monkeypatch.setattr(translator.model, "start", lambda *a: calls.append(1) or real_start(*a))
    found = translator.search(["", "   ", ""])
    assert [t.text for t in found] == ["", "", ""] and all(not t.hypotheses for t in found)
    assert calls == []
    translator.search(["", SENTENCES[0]])
    assert calls == [1]


def test_a_line_over_max_len_is_truncated_with_a_warning_not_dropped(translator, caplog):
    max_len = translator.config.data.max_len
    long_line = " ".join(["Ein Mann fährt Fahrrad."] * max_len)
    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        found = translator.search([SENTENCES[0], long_line], translator.settings(attention=True),
                                  first_line=7)
    assert len(found) == 2 and found[1].hypotheses
    assert len(found[1].src_pieces) == max_len
    assert found[1].hypotheses[0].attention.shape[-1] == max_len + 1  # + EOS
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "line 8" in warnings[0] and f"first {max_len}" in warnings[0]


def test_nbest_gives_k_hypotheses_best_first(translator):
    (found,) = translator.search([SENTENCES[1]], translator.settings(beam_size=4, nbest=3))
    scores = [hyp.score for hyp in found.hypotheses]
    assert len(found.texts) == len(found.tgt_pieces) == 3
    assert scores == sorted(scores, reverse=True)
    assert found.text == found.texts[0]


def test_strongest_sources_name_one_source_piece_per_target_piece(translator):
    (found,) = translator.search([SENTENCES[3]], translator.settings(beam_size=1, attention=True))
    src_labels, tgt_labels = found.attention_labels()
    strongest = found.strongest_sources()
    assert [tgt for tgt, _, _ in strongest] == tgt_labels
    assert tgt_labels[-1] == "</s>" and src_labels[-1] == "</s>"
    assert all(src in src_labels and 0.0 < weight <= 1.0 for _, src, weight in strongest)
    weights = found.hypotheses[0].attention.mean(dim=0)  # (T + 1, S)
    assert strongest[0][2] == pytest.approx(float(weights[0].max()))


@pytest.mark.parametrize("heads", [1, 2])
def test_attention_plots_are_images_one_per_head(untrained_translator, tmp_path, heads):
    attention = MultiHeadAttentionConfig(num_heads=heads) if heads > 1 \
        else AdditiveAttentionConfig()
    translator = untrained_translator(attention)
    assert translator.model.decoder.attention.num_heads == heads
    (found,) = translator.search([SENTENCES[0]], translator.settings(beam_size=2, attention=True))
    src, tgt = found.attention_labels()
    paths = save_attention_pngs(found.weights(), src, tgt, tmp_path / "0000",
                                title="0: " + SENTENCES[0])
    expected = ["0000.png"] if heads == 1 else [f"0000.head{k}.png" for k in range(1, heads + 1)]
    assert sorted(p.name for p in paths) == sorted(expected)
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_attention_is_kept_only_when_asked_for(translator):
    (found,) = translator.search([SENTENCES[0]])
    assert found.hypotheses[0].attention is None
    with pytest.raises(ValueError, match="attention=True"):
        found.strongest_sources()


def test_weights_that_do_not_fit_the_config_are_a_checkpoint_error(trained_checkpoint, tmp_path):
    payload = load_checkpoint(trained_checkpoint)
    payload["config"]["model"]["hidden_size"] = 48
    del payload["format_version"]
    save_checkpoint(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as error:
        Translator.from_checkpoint(tmp_path / "bad.pt", device="cpu")
    # it once ended at "Error(s) in loading state_dict for Seq2Seq:", naming no tensor
    assert re.fullmatch(
        re.escape(f"{tmp_path / 'bad.pt'}: the weights do not fit the model its config "
                  "describes: encoder.rnn.weight_ih_l0 is (96, 32) in the file but (144, 32) in "
                  "the model (and ") + r"\d+ other differences\)", str(error.value)), error.value


def test_a_checkpoint_trained_with_more_threads_than_this_machine_takes_loads(
        trained_checkpoint, tmp_path):
    """The thread cap is this machine's: it is no TrainConfig check, which would refuse the
    config of a checkpoint trained on a larger machine."""
    payload = load_checkpoint(trained_checkpoint)
    payload["config"]["train"]["num_threads"] = int(CPU_THREADS.high) + 1
    save_checkpoint(payload, tmp_path / "many_threads.pt")
    translator = Translator.from_checkpoint(tmp_path / "many_threads.pt", device="cpu")
    assert translator.config.train.num_threads == CPU_THREADS.high + 1


def test_weights_missing_from_the_file_or_unknown_to_the_model_are_named(trained_checkpoint,
                                                                         tmp_path):
    payload = load_checkpoint(trained_checkpoint)
    payload["model"]["extra.weight"] = payload["model"].pop("decoder.output_layer.bias")
    save_checkpoint(payload, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError) as error:
        Translator.from_checkpoint(tmp_path / "renamed.pt", device="cpu")
    assert str(error.value) == (
        f"{tmp_path / 'renamed.pt'}: the weights do not fit the model its config describes: "
        "decoder.output_layer.bias is missing from the file (and 1 other difference)")
