"""Word alignments from attention: subword weights aggregated to words, then hard links.

The model attends from target subwords to source subwords; alignments are between words. A word
starts at a piece beginning with sentencepiece's "▁" (and at the first piece). Heads are
averaged; the EOS row and column are left out. A source word's weight is the sum over its pieces
(the attention it receives), a target word's row is the mean over its pieces (each piece's row
is a distribution). Hard links join each target word to its strongest source word, as fairseq's
`--print-alignment` and OpenNMT-py's `-report_align` do (Luong et al. 2015, sec. 5.4), in
Pharaoh format: `i-j`, source word i, target word j, 0-based, sorted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

WORD_START = "▁"
Link = tuple[int, int]  # (source word, target word)


def word_index(pieces: Sequence[str]) -> list[int]:
    """The 0-based word each piece belongs to: ["▁ein", "▁Hu", "nd"] -> [0, 1, 1].

    A piece that is only "▁" (a space the tokenizer kept apart) belongs to no word (-1) and
    makes the next piece start one, so words are the whitespace-separated words of the text.
    """
    words: list[int] = []
    count, starts = 0, True
    for piece in pieces:
        starts = starts or piece.startswith(WORD_START)
        if not piece.lstrip(WORD_START):
            words.append(-1)
            continue
        count += starts
        words.append(count - 1)
        starts = False
    return words


def word_attention(weights: Tensor, src_pieces: Sequence[str],
                   tgt_pieces: Sequence[str]) -> Tensor:
    """weights (heads, T + 1, S + 1), pieces without EOS -> (target words, source words).

    Row j is target word j's mean piece row, column i the sum over source word i's pieces.
    """
    T, S = len(tgt_pieces), len(src_pieces)
    pieces = weights.float().mean(dim=0)[:T, :S]  # (T, S): heads averaged, EOS left out
    tgt_words, src_words = _grouping(tgt_pieces, T), _grouping(src_pieces, S)  # (J, T), (I, S)
    summed = pieces @ src_words.T  # (T, I)
    return (tgt_words @ summed) / tgt_words.sum(dim=1, keepdim=True).clamp(min=1)  # (J, I)


def hard_links(matrix: Tensor) -> list[Link]:
    """matrix (J, I) -> each target word j linked to its argmax source word i, sorted (i, j)."""
    if matrix.numel() == 0:  # no target or no source words
        return []
    return sorted((int(i), j) for j, i in enumerate(matrix.argmax(dim=1).tolist()))


def pharaoh(links: Sequence[Link]) -> str:
    """"0-0 1-2 ..." (empty for no links)."""
    return " ".join(f"{i}-{j}" for i, j in links)


def format_soft(matrix: Tensor) -> str:
    """One space-separated field per target word, its source-word weights comma-separated (as
    fairseq prints soft alignments)."""
    return " ".join(",".join(f"{weight:.4f}" for weight in row) for row in matrix.tolist())


def _grouping(pieces: Sequence[str], length: int) -> Tensor:
    """(words, pieces) 0/1 matrix: entry (w, p) is 1 where piece p belongs to word w."""
    words = torch.tensor(word_index(pieces[:length]), dtype=torch.long)  # (P,)
    count = int(words.max()) + 1 if length else 0  # -1 (a lone "▁") matches no row
    return (torch.arange(count).unsqueeze(1) == words.unsqueeze(0)).float()  # (W, P)
