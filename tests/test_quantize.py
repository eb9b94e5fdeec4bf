"""int8 decoding: the quantized model keeps N lines in = N lines out and stays close to fp32; the
commands take --quantize and refuse it off the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from seq2seq.cli import evaluate, translate
from seq2seq.errors import DeviceError
from seq2seq.inference.translator import Translator

LINES = ["Eine Frau singt.", "", "Ein Mann läuft vor dem Haus.", "Zwei Hunde spielen im Schnee."]


@pytest.fixture(scope="module")
def translators(trained_checkpoint) -> tuple[Translator, Translator]:
    torch.set_num_threads(1)
    return (Translator.from_checkpoint(trained_checkpoint, device="cpu"),
            Translator.from_checkpoint(trained_checkpoint, quantize="int8"))


def test_linear_and_gru_layers_become_int8_and_the_trained_model_is_counted(translators):
    fp32, int8 = translators
    assert int8.quantization == "int8" and int8.device == torch.device("cpu")
    dynamic = torch.ao.nn.quantized.dynamic
    assert any(isinstance(module, dynamic.Linear) for module in int8.model.modules())
    assert any(isinstance(module, dynamic.GRU) for module in int8.model.modules())
    fp32_layers = [name for name, module in int8.model.named_modules()
                   if type(module) in (nn.Linear, nn.GRU)]
    assert fp32_layers == ["decoder.attention.energy_layer"]  # read as a vector: kept fp32
    assert int8.parameters == fp32.parameters == sum(
        p.numel() for p in fp32.model.parameters())


def test_int8_scores_stay_close_to_fp32(translators, tiny_corpus_dir):
    fp32, int8 = translators
    lines = (tiny_corpus_dir / "tiny" / "test.de").read_text(encoding="utf-8").splitlines()
    src_ids = fp32.tokenizer.encode_src(lines[:16])
    from seq2seq.data.batching import pad_source

    src, src_lengths, _ = pad_source(src_ids)
    tgt_in = src[:, :8].clamp(max=fp32.tokenizer.tgt_vocab_size - 1)
    with torch.inference_mode():
        expected = fp32.model(src, src_lengths, tgt_in)[0].log_softmax(-1)  # (B, T, V)
        got = int8.model(src, src_lengths, tgt_in)[0].log_softmax(-1)
    assert (got - expected).abs().max() < 0.1 * expected.abs().max()
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.9


def test_int8_translates_n_lines_to_n_lines(translators):
    fp32, int8 = translators
    found = int8.translate(LINES, int8.settings(beam_size=3))
    assert len(found) == len(LINES) and found[1] == ""
    assert all(found[i] for i in (0, 2, 3))


def test_quantize_off_the_cpu_is_refused(trained_checkpoint):
    with pytest.raises(DeviceError, match="CPU only"):
        Translator.from_checkpoint(trained_checkpoint, device="cuda", quantize="int8")


def test_translate_and_evaluate_take_quantize(trained_checkpoint, tiny_corpus_dir, tmp_path,
                                              translators, capsys):
    _, int8 = translators
    common = ["--checkpoint", str(trained_checkpoint), "--quantize", "int8", "--beam", "2"]
    translate.main([*common, "--output", str(tmp_path / "out.txt"), *LINES[2:]])
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == int8.translate(
        LINES[2:], int8.settings(beam_size=2))
    evaluate.main([*common, "--split", "test", "--json", str(tmp_path / "scores.json")])
    assert "on cpu, int8" in capsys.readouterr().out
    assert json.loads((tmp_path / "scores.json").read_text())["quantization"] == "int8"


def test_quantize_with_cuda_is_a_one_line_error(trained_checkpoint, capsys):
    with pytest.raises(SystemExit) as stopped:
        translate.main(["--checkpoint", str(trained_checkpoint), "--quantize", "int8",
                        "--device", "cuda", "Hallo"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --quantize int8 runs on the CPU only, not on cuda: use --device cpu (or auto)"]


def test_every_scorer_quantizes_and_translates_n_lines(untrained_translator, attention_config):
    fp32 = untrained_translator(attention_config)
    int8 = Translator(fp32.model, fp32.tokenizer, fp32.config, torch.device("cpu"),
                      quantization="int8")
    found = int8.search(LINES, int8.settings(beam_size=2, nbest=2))
    assert [len(t.hypotheses) for t in found] == [2, 0, 2, 2]
    assert fp32.translate(LINES[:1])  # the fp32 model was copied, not changed
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in fp32.model.modules())
