"""Greedy and beam search on small randomly initialised models of every configuration.

A random model's translations are meaningless, but search must still be exact about it: beam 1
takes greedy's path, a batch decodes as its sentences would alone, and every reported score is
the log-probability that the model's teacher-forced forward pass gives the same tokens.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from seq2seq.config import (
    ATTENTION_CONFIGS,
    BEAM_SIZE,
    AttentionConfig,
    DecoderStyle,
    DotAttentionConfig,
    ModelConfig,
)
from seq2seq.data.batching import pad_source
from seq2seq.errors import ConfigError
from seq2seq.inference.search import (
    beam_search,
    gnmt_length_penalty,
    greedy,
    max_output_lengths,
)
from seq2seq.nn.model import build_model
from seq2seq.special_ids import BOS_ID, EOS_ID, FIRST_PIECE_ID, PAD_ID, UNK_ID

VOCAB = 24
SHORT = {"max_len_ratio": 1.0, "max_len_offset": 2}  # short limits keep the tests fast


def make_model(attention: AttentionConfig, style: DecoderStyle, feeding: bool,
               eos_bias: float = 0.0, vocab: int = VOCAB) -> torch.nn.Module:
    """A tiny random model in eval mode. Weights are scaled up so that its output distribution
    is peaked (a search then has real choices to make); `eos_bias` is added to the EOS logit so
    that a random model ends its sentences instead of always running to the length limit. Its
    output layer scores every other piece only, as one over a joint vocabulary would: search
    must turn its rows into the right ids."""
    torch.manual_seed(0)
    model_cfg = ModelConfig(embedding_size=16, hidden_size=16, decoder_style=style,
                            input_feeding=feeding)
    output_ids = [*range(FIRST_PIECE_ID), *range(FIRST_PIECE_ID + 1, vocab, 2)]
    model = build_model(model_cfg, attention, vocab, vocab, output_ids)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
        model.decoder.output_layer.bias[EOS_ID] += eos_bias
    return model.eval()


def make_source(seed: int = 0, batch_size: int = 6,
                vocab: int = VOCAB) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of sources of different lengths (1 to 8 subwords, plus EOS)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = [1, 8, 3, 5, 2, 7, 4, 6][:batch_size]
    ids = [torch.randint(4, vocab, (n,), generator=generator).tolist() for n in lengths]
    src, src_lengths, _ = pad_source(ids)
    return src, src_lengths


def forward_log_prob(model, src, src_lengths, tokens: list[int]) -> torch.Tensor:
    """Per-step log-probabilities of `tokens + EOS` for one sentence, teacher-forced: (T+1, V)."""
    tgt_in = torch.tensor([[BOS_ID, *tokens]])
    with torch.inference_mode():
        logits, _ = model(src, src_lengths, tgt_in)  # (1, T + 1, K)
    return by_id(model, logits[0].float().log_softmax(dim=-1))


def by_id(model, log_probs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the output layer's rows (..., K) -> over the vocabulary's ids
    (..., V): -inf for an id that has no row."""
    layer = model.decoder.output_layer
    full = log_probs.new_full((*log_probs.shape[:-1], len(layer.rows)), float("-inf"))
    full[..., layer.ids] = log_probs
    return full


def all_log_probs(model, src: torch.Tensor, outputs: list[list[int]]) -> torch.Tensor:
    """Teacher-forced log-probabilities of `output + EOS` for every output, one source (S,)."""
    width = max(map(len, outputs)) + 1
    tgt_in = torch.tensor([[BOS_ID, *o] + [PAD_ID] * (width - 1 - len(o)) for o in outputs])
    tgt_out = torch.tensor([[*o, EOS_ID] + [PAD_ID] * (width - 1 - len(o)) for o in outputs])
    sources = src.expand(len(outputs), -1)  # (N, S)
    lengths = torch.full((len(outputs),), src.numel())
    with torch.inference_mode():
        logits, _ = model(sources, lengths, tgt_in)  # (N, width, K)
    log_probs = by_id(model, logits.float().log_softmax(dim=-1))  # (N, width, V)
    picked = log_probs.gather(2, tgt_out[..., None]).squeeze(2)
    return picked.masked_fill(tgt_out == PAD_ID, 0.0).sum(dim=1)  # (N,)


def sequence_log_prob(model, src, src_lengths, tokens: list[int]) -> float:
    log_probs = forward_log_prob(model, src, src_lengths, tokens)
    target = torch.tensor([*tokens, EOS_ID])
    return float(log_probs.gather(1, target[:, None]).sum())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def variant(scorer, decoder) -> tuple[AttentionConfig, DecoderStyle, bool]:
    """make_model's arguments for every scorer (without attention dropout) and decoder."""
    return ATTENTION_CONFIGS[scorer](dropout=0.0), decoder.style, decoder.input_feeding


@pytest.fixture
def model(variant):
    return make_model(*variant)


def test_beam_one_is_greedy(model):
    src, src_lengths = make_source()
    found = greedy(model, src, src_lengths)
    beams = beam_search(model, src, src_lengths, beam_size=1, length_penalty=0.0)
    assert [h.tokens for h in found] == [b[0].tokens for b in beams]
    # with no length penalty both scores are the plain log-probability
    assert [h.score for h in found] == pytest.approx([b[0].score for b in beams], abs=1e-5)
    # the penalty only rescales the score of a single path
    beams = beam_search(model, src, src_lengths, beam_size=1, length_penalty=1.0)
    assert [h.tokens for h in found] == [b[0].tokens for b in beams]


def test_greedy_follows_the_model_and_stops_at_eos(variant):
    model = make_model(*variant, eos_bias=4.0)
    src, src_lengths = make_source()
    max_lens = max_output_lengths(src_lengths, ratio=1.5, offset=10).tolist()
    found = greedy(model, src, src_lengths)
    stopped_early = 0
    for b, hyp in enumerate(found):
        n = int(src_lengths[b])
        log_probs = forward_log_prob(model, src[b:b + 1, :n], src_lengths[b:b + 1], hyp.tokens)
        log_probs[:, [PAD_ID, BOS_ID]] = float("-inf")  # search never produces these
        # every token is the teacher-forced argmax at its step ...
        assert log_probs[:-1].argmax(dim=1).tolist() == hyp.tokens
        # ... and the search stopped where EOS was the best next token
        if len(hyp.tokens) < max_lens[b]:
            assert int(log_probs[-1].argmax()) == EOS_ID
            stopped_early += 1
        expected = sequence_log_prob(model, src[b:b + 1, :n], src_lengths[b:b + 1], hyp.tokens)
        assert hyp.score == pytest.approx(expected, abs=1e-4)
    assert stopped_early  # the EOS branch was exercised


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_greedy_stops_at_the_length_limit(model, limit):
    src, src_lengths = make_source()
    unlimited = greedy(model, src, src_lengths, max_len_ratio=10.0)
    assert max(len(h.tokens) for h in unlimited) > limit  # the limit bites somewhere
    # ratio 0: the limit is `limit` tokens for every sentence
    found = greedy(model, src, src_lengths, max_len_ratio=0.0, max_len_offset=limit,
                   need_attention=True)
    for b, (hyp, free) in enumerate(zip(found, unlimited, strict=True)):
        # a prefix of the unlimited output, cut at the limit, then EOS (forced)
        assert hyp.tokens == free.tokens[:limit]
        assert hyp.attention.shape[1] == len(hyp.tokens) + 1
        n = int(src_lengths[b])
        expected = sequence_log_prob(model, src[b:b + 1, :n], src_lengths[b:b + 1], hyp.tokens)
        assert hyp.score == pytest.approx(expected, abs=1e-4)


def test_batched_beam_search_equals_one_sentence_at_a_time(model):
    src, src_lengths = make_source(seed=1)
    settings = {"beam_size": 4, "nbest": 4, "length_penalty": 1.0, **SHORT}
    batched = beam_search(model, src, src_lengths, **settings)
    for b, hyps in enumerate(batched):
        n = int(src_lengths[b])
        alone = beam_search(model, src[b:b + 1, :n], src_lengths[b:b + 1], **settings)[0]
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_nbest_are_distinct_sorted_and_scored_with_the_gnmt_penalty(model):
    src, src_lengths = make_source(seed=2)
    alpha = 0.6
    found = beam_search(model, src, src_lengths, beam_size=5, nbest=5, length_penalty=alpha)
    for b, hyps in enumerate(found):
        assert len(hyps) == 5
        assert len({tuple(h.tokens) for h in hyps}) == 5
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        n = int(src_lengths[b])
        for hyp in hyps:
            log_prob = sequence_log_prob(model, src[b:b + 1, :n], src_lengths[b:b + 1],
                                         hyp.tokens)
            penalty = gnmt_length_penalty(len(hyp.tokens) + 1, alpha)
            assert hyp.score == pytest.approx(log_prob / penalty, abs=1e-4)


def test_a_beam_as_wide_as_the_search_space_finds_the_most_probable_outputs(variant):
    # With at most two tokens per output, a beam as wide as the number of two-token prefixes
    # prunes nothing: its n-best must be the n most probable of all possible outputs (scored
    # here by brute force with teacher forcing), and its best at least as probable as greedy's.
    # The vocabulary is as small as the widest beam needs: 10 words, 100 two-token prefixes.
    vocab = 3 + math.isqrt(int(BEAM_SIZE.high))  # PAD, BOS and EOS emit nothing
    model = make_model(*variant, vocab=vocab)
    src, src_lengths = make_source(seed=5, batch_size=3, vocab=vocab)
    limit = {"max_len_ratio": 0.0, "max_len_offset": 2}
    words = [UNK_ID, *range(4, vocab)]  # every id but EOS that search may emit
    outputs = [[], *([w] for w in words), *([w, v] for w in words for v in words)]
    found = beam_search(model, src, src_lengths, beam_size=len(words) ** 2, nbest=3,
                        length_penalty=0.0, **limit)
    greedy_found = greedy(model, src, src_lengths, **limit)
    for b in range(len(src)):
        n = int(src_lengths[b])
        log_probs = all_log_probs(model, src[b, :n], outputs)  # (len(outputs),)
        best = log_probs.topk(3)
        assert [h.tokens for h in found[b]] == [outputs[i] for i in best.indices.tolist()]
        assert [h.score for h in found[b]] == pytest.approx(best.values.tolist(), abs=1e-4)
        assert found[b][0].score >= greedy_found[b].score - 1e-5


def test_beam_search_beats_greedy_on_the_whole_batch(model):
    # Per sentence this is not guaranteed (the beam may prune greedy's path), but summed over
    # a batch a 5-wide beam on a peaked model finds clearly more probable outputs.
    src, src_lengths = make_source(seed=3)
    greedy_total = sum(h.score for h in greedy(model, src, src_lengths))
    found = beam_search(model, src, src_lengths, beam_size=5, length_penalty=0.0)
    assert sum(hyps[0].score for hyps in found) > greedy_total


def test_hypotheses_hold_no_special_ids_and_attention_over_the_real_source(model):
    heads = model.decoder.attention.num_heads
    src, src_lengths = make_source(seed=4)
    greedy_found = greedy(model, src, src_lengths, need_attention=True)
    beam_found = beam_search(model, src, src_lengths, beam_size=3, nbest=3, need_attention=True)
    for b in range(len(src)):
        for hyp in [greedy_found[b], *beam_found[b]]:
            assert not {PAD_ID, BOS_ID, EOS_ID} & set(hyp.tokens)
            assert hyp.attention.device.type == "cpu"
            assert hyp.attention.shape == (heads, len(hyp.tokens) + 1, int(src_lengths[b]))
            # rows are distributions over the real source tokens: padding gets no weight
            torch.testing.assert_close(hyp.attention.sum(-1), torch.ones(heads,
                                                                        len(hyp.tokens) + 1))


def test_keeping_attention_changes_no_translation_or_score(model):
    src, src_lengths = make_source(seed=5)
    for search in (greedy, partial(beam_search, beam_size=3, nbest=2)):
        plain, kept = search(model, src, src_lengths), search(model, src, src_lengths,
                                                              need_attention=True)
        for without, withal in zip(plain, kept, strict=True):
            without, withal = (x if isinstance(x, list) else [x] for x in (without, withal))
            assert [h.tokens for h in without] == [h.tokens for h in withal]
            assert [h.score for h in without] == pytest.approx([h.score for h in withal])
            assert all(h.attention is None for h in without)
            assert all(h.attention is not None for h in withal)


def test_gnmt_length_penalty():
    assert gnmt_length_penalty(1, 1.0) == 1.0
    assert gnmt_length_penalty(7, 1.0) == 2.0
    assert gnmt_length_penalty(7, 0.5) == pytest.approx(2.0**0.5)
    assert gnmt_length_penalty(30, 0.0) == 1.0


def test_max_output_lengths_scale_with_the_source():
    lengths = max_output_lengths(torch.tensor([1, 4, 10]), ratio=1.5, offset=10)
    assert lengths.tolist() == [11, 16, 25]


def test_invalid_nbest_is_refused():
    model = make_model(DotAttentionConfig(), DecoderStyle.luong, False)
    src, src_lengths = make_source(batch_size=2)
    with pytest.raises(ValueError, match="nbest"):
        beam_search(model, src, src_lengths, beam_size=2, nbest=3)


def test_a_beam_past_the_cap_is_refused_before_any_work(monkeypatch):
    """Beam 10000000 once failed to allocate, 100000 ran for minutes."""
    model = make_model(DotAttentionConfig(), DecoderStyle.luong, False)
    monkeypatch.setattr(model, "start", None)  # never reached
    src, src_lengths = make_source(batch_size=2)
    with pytest.raises(ConfigError) as error:
        beam_search(model, src, src_lengths, beam_size=10_000_000)
    assert str(error.value) == f"beam_size must be in {BEAM_SIZE}, got 10000000"
