"""Word dropout: drop whole token embeddings while training."""

from __future__ import annotations

from torch import Tensor, nn


class WordDropout(nn.Module):
    """Zero each token's whole embedding with probability ``p`` while training and scale the kept
    ones by 1 / (1 - p), as `nn.Dropout` does (Gal & Ghahramani 2016, sec. 4; Sennrich et al.
    2016 drop source and target words in their WMT16 RNN systems).

    Element dropout leaves most of a word's dimensions in place, so the word still gets through;
    a dropped word is gone, and the model must translate it from its context, which small corpora
    like Multi30k reward. Evaluation and search see every word.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"word dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, embedded: Tensor) -> Tensor:
        """embedded (B, T, E) -> (B, T, E), whole rows of E zeroed."""
        if not self.training or self.p == 0.0:
            return embedded
        B, T, _ = embedded.shape
        keep = embedded.new_empty(B, T, 1).bernoulli_(1.0 - self.p).div_(1.0 - self.p)  # (B, T, 1)
        return embedded * keep  # one pass over (B, T, E), the scale rides on the mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
