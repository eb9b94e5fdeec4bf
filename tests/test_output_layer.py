"""The output layer over the target pieces only: exact for training targets, and the same
pieces, rows and scores in training, search, ensembles and int8."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seq2seq.config import GeneralAttentionConfig, ModelConfig
from seq2seq.data.prepare import prepare_data
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.quantize import quantize
from seq2seq.inference.search import beam_search
from seq2seq.inference.translator import Translator
from seq2seq.nn.model import build_model
from seq2seq.nn.output_layer import check_output_ids
from seq2seq.special_ids import BOS_ID, EOS_ID, FIRST_PIECE_ID, PAD_ID, UNK_ID
from seq2seq.training.loss import summed_loss

VOCAB = 30
EVEN = [*range(FIRST_PIECE_ID), *range(FIRST_PIECE_ID, VOCAB, 2)]  # the pieces one model scores

pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(output_ids=EVEN, tie: bool = True, share: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(embedding_size=16, hidden_size=16, tie_embeddings=tie,
                      share_embeddings=share, embedding_dropout=0.0, output_dropout=0.0)
    return build_model(cfg, GeneralAttentionConfig(), VOCAB, VOCAB, output_ids).double()


def batch(targets: list[list[int]]):
    """Sources of ids 5.. and the given targets: src, src_lengths, tgt_in, tgt_out."""
    src = torch.tensor([[5, 7, 9, EOS_ID], [11, 13, EOS_ID, PAD_ID]])
    width = max(map(len, targets)) + 1
    tgt_in = torch.tensor([[BOS_ID, *t] + [PAD_ID] * (width - 1 - len(t)) for t in targets])
    tgt_out = torch.tensor([[*t, EOS_ID] + [PAD_ID] * (width - 1 - len(t)) for t in targets])
    return src, torch.tensor([4, 3]), tgt_in, tgt_out


@pytest.mark.parametrize("tie", [True, False])
def test_the_training_loss_is_the_cross_entropy_of_the_logits_search_reads(tie):
    model = make_model(tie=tie, share=tie)
    src, src_lengths, tgt_in, tgt_out = batch([[4, 6, 8], [10, 12]])
    loss, _ = summed_loss(model, src, src_lengths, tgt_in, tgt_out)
    logits, _ = model(src, src_lengths, tgt_in)  # (B, T, K)
    assert logits.shape[-1] == len(EVEN)
    mask = tgt_out.ne(PAD_ID)
    rows = torch.tensor([EVEN.index(int(t)) for t in tgt_out[mask]])
    torch.testing.assert_close(loss, F.cross_entropy(logits[mask], rows, reduction="sum"))


def test_a_target_piece_without_a_row_is_scored_as_unk():
    """A validation reference may hold a piece no training target has: its loss stays finite,
    that of UNK."""
    model = make_model().eval()
    src, src_lengths, tgt_in, odd = batch([[4, 7], [6]])
    unk = odd.masked_fill(odd == 7, UNK_ID)  # the same inputs, UNK as the second target
    with torch.no_grad():
        odd_loss, _ = summed_loss(model, src, src_lengths, tgt_in, odd)
        unk_loss, _ = summed_loss(model, src, src_lengths, tgt_in, unk)
    assert torch.isfinite(odd_loss)
    torch.testing.assert_close(odd_loss, unk_loss)


def test_a_tied_layer_reads_only_its_rows_of_the_table():
    model = make_model()
    src, src_lengths, tgt_in, tgt_out = batch([[4, 6], [8]])
    summed_loss(model, src, src_lengths, tgt_in, tgt_out)[0].backward()
    grad = model.encoder.embedding.weight.grad  # (V, E): one table for inputs and outputs
    unused = [i for i in range(VOCAB) if i not in EVEN and i not in src.tolist()[0] + [11, 13]]
    assert unused and not grad[unused].any()  # neither an input nor a row of the output layer
    assert grad[EVEN].abs().sum(dim=1).gt(0).all()  # every row gets the softmax's gradient


def test_search_follows_the_table_after_every_optimizer_step():
    """Search reuses one gathered copy of the tied rows; an optimizer step must renew it."""
    model = make_model()
    layer = model.decoder.output_layer
    features = torch.randn(3, 16, dtype=torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(2):
        with torch.no_grad():
            searched = layer(features)
        weight = model.encoder.embedding.weight[EVEN]
        torch.testing.assert_close(searched, F.linear(features, weight, layer.bias))
        optimizer.zero_grad()
        summed_loss(model, *batch([[4, 6], [8]]))[0].backward()
        optimizer.step()
    assert not torch.equal(searched, layer(features).detach())  # the step changed the rows


def test_beam_search_emits_only_the_pieces_it_scores():
    model = make_model().float().eval()
    with torch.no_grad():  # make an odd piece the most probable next token, were it scored
        model.decoder.output_layer.bias.zero_()
    src, src_lengths, _, _ = batch([[4], [4]])
    found = beam_search(model, src, src_lengths, beam_size=4, nbest=4)
    tokens = {t for hyps in found for h in hyps for t in h.tokens}
    assert tokens and tokens <= set(EVEN[FIRST_PIECE_ID:]) | {UNK_ID}


def test_an_ensemble_of_members_scoring_other_pieces_emits_only_pieces_all_of_them_score():
    thirds = [*range(FIRST_PIECE_ID), *range(FIRST_PIECE_ID, VOCAB, 3)]
    first, second = make_model().float().eval(), make_model(thirds, seed=1).float().eval()
    ensemble = Ensemble([first, second]).eval()
    layer = ensemble.decoder.output_layer
    assert layer.ids.tolist() == sorted(set(EVEN) | set(thirds))
    src, src_lengths, _, _ = batch([[4], [4]])
    with torch.inference_mode():
        memory, state = ensemble.start(src, src_lengths)
        features, _, _ = ensemble.decoder.step_features(torch.full((2,), BOS_ID), state, memory)
        mixed = layer(features)  # (2, K)
        alone = []
        for member in (first, second):
            member_memory, member_state = member.start(src, src_lengths)
            logits, _, _ = member.decoder.step(torch.full((2,), BOS_ID), member_state,
                                               member_memory)
            full = torch.full((2, VOCAB), float("-inf"))
            full[:, member.decoder.output_layer.ids] = logits.log_softmax(dim=-1)
            alone.append(full[:, layer.ids])
    torch.testing.assert_close(mixed, (alone[0] + alone[1]) / 2)
    found = beam_search(ensemble, src, src_lengths, beam_size=4, nbest=4)
    tokens = {t for hyps in found for h in hyps for t in h.tokens}
    assert tokens and tokens <= set(EVEN) & set(thirds)


def test_int8_quantizes_the_rows_it_scores():
    model = make_model().float().eval()
    int8 = quantize(model, "int8")
    layer = int8.decoder.output_layer
    assert type(layer.linear).__module__.startswith("torch.ao.nn.quantized")
    assert torch.equal(layer.ids, model.decoder.output_layer.ids)
    features = torch.randn(4, 16)
    with torch.no_grad():
        expected = model.decoder.output_layer(features)
        torch.testing.assert_close(layer(features), expected, atol=0.05 * expected.abs().max(),
                                   rtol=0)
    assert model.decoder.output_layer.table is model.encoder.embedding  # the copy, not it


def test_prepared_data_scores_the_special_ids_and_the_training_targets_pieces(
        tiny_data_config):
    data = prepare_data(tiny_data_config)
    used = set(np.asarray(data.train.tgt_tokens).tolist())
    assert data.output_ids.tolist() == sorted(used | set(range(FIRST_PIECE_ID)))
    assert len(data.output_ids) < data.tokenizer.tgt_vocab_size  # the joint vocabulary's German
    assert data.stats()["output_pieces"] == len(data.output_ids)
    sampling = dataclasses.replace(tiny_data_config, tokenizer=dataclasses.replace(
        tiny_data_config.tokenizer, sampling=dataclasses.replace(
            tiny_data_config.tokenizer.sampling, enabled=True)))
    sampled = prepare_data(sampling)  # any piece of the text may turn up in a segmentation
    assert sampled.output_ids.tolist() == list(range(sampled.tokenizer.tgt_vocab_size))


def test_a_checkpoint_keeps_the_pieces_its_model_scores(trained_checkpoint, tiny_data_config):
    translator = Translator.from_checkpoint(trained_checkpoint, device="cpu")
    ids = translator.model.decoder.output_layer.ids
    assert ids.tolist() == prepare_data(tiny_data_config).output_ids.tolist()
    assert len(ids) < translator.tokenizer.tgt_vocab_size


@pytest.mark.parametrize("ids, message", [
    ([0, 1, 2], "at least"),
    ([1, 2, 3, 4, 5], "begin with the special ids"),
    ([0, 1, 2, 3, 6, 5], "ascend"),
    ([0, 1, 2, 3, 5, 5], "ascend"),
    ([0, 1, 2, 3, VOCAB], "below the vocabulary size"),
])
def test_output_ids_are_checked(ids, message):
    with pytest.raises(ValueError, match=message):
        check_output_ids(torch.tensor(ids), VOCAB)
