"""Word dropout: whole embeddings dropped while training, unbiased, and off in evaluation."""

from __future__ import annotations

import pytest
import torch

from seq2seq.nn.word_dropout import WordDropout

pytestmark = pytest.mark.usefixtures("one_thread")


def embeddings(B: int = 64, T: int = 50, E: int = 8) -> torch.Tensor:
    return torch.randn(B, T, E, generator=torch.Generator().manual_seed(0)).double() + 2.0


def test_training_drops_whole_tokens_and_scales_the_rest():
    torch.manual_seed(1)
    x = embeddings()  # (B, T, E), no zero entries
    y = WordDropout(0.25).train()(x)
    dropped = y.eq(0).all(-1)  # (B, T)
    assert y.eq(0).any(-1).eq(dropped).all(), "a token is dropped whole or not at all"
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.75)
    assert 0.22 < dropped.double().mean().item() < 0.28  # 3200 tokens at p = 0.25


def test_mean_is_unchanged():
    torch.manual_seed(2)
    x = torch.ones(400, 500, 1, dtype=torch.double)
    assert WordDropout(0.3).train()(x).mean().item() == pytest.approx(1.0, abs=0.01)


def test_same_seed_same_draws():
    x, dropout = embeddings(), WordDropout(0.1).train()
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    torch.testing.assert_close(dropout(x), first, rtol=0, atol=0)


@pytest.mark.parametrize("p,train", [(0.5, False), (0.0, True)])
def test_evaluation_and_p_zero_keep_every_word(p, train):
    x = embeddings()
    assert WordDropout(p).train(train)(x) is x


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_probability_out_of_range_is_refused(p):
    with pytest.raises(ValueError, match="word dropout"):
        WordDropout(p)
