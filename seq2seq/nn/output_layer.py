"""The output layer: logits over the target pieces only, not over the whole vocabulary.

A joint subword vocabulary (one sentencepiece model for both languages, which shared embeddings
need) holds pieces that only the source language uses: English training targets of Multi30k use
3,959 of the 8,000 joint pieces. A row for a piece that is never a training target only learns
to be improbable, yet costs its share of the output matmul, softmax and top-k at every step of
training and search, the largest costs of both on the CPU (docs/results.md, "Where the CPU time
goes"). So the layer scores the pieces in `ids` (those of the training targets, and the special
ids; `seq2seq.data.prepare`), row r scoring piece `ids[r]`; search turns rows back into ids with
`ids` and the loss turns target ids into rows with `rows`. Every training target has a row, so
training is exact; a piece that no training target holds (a validation reference's, say) is
scored as UNK, and search can no more produce it than the full layer in practice would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.special_ids import FIRST_PIECE_ID, UNK_ID


class OutputLayer(nn.Module):
    """Linear logits (N, K) over K target pieces; its weight is its own or, tied (Press & Wolf
    2017), rows `ids` of an embedding table."""

    def __init__(self, in_features: int, vocab_size: int, ids: Sequence[int] | Tensor | None):
        """`ids`: the vocabulary ids to score, ascending, the special ids among them; None:
        every id of the vocabulary."""
        super().__init__()
        ids = torch.arange(vocab_size) if ids is None else torch.as_tensor(ids, dtype=torch.long)
        check_output_ids(ids, vocab_size)
        rows = torch.full((vocab_size,), UNK_ID, dtype=torch.long)  # (V,)
        rows[ids] = torch.arange(len(ids))
        self.in_features = in_features
        self.register_buffer("ids", ids)  # (K,) the vocabulary id that each row scores
        self.register_buffer("rows", rows, persistent=False)  # (V,) each id's row, UNK's if none
        self.linear: nn.Linear | None = nn.Linear(in_features, len(ids))
        self.bias: nn.Parameter | None = None  # tied: the bias (the table has none)
        self._table: list[nn.Embedding] = []  # tied: the table, not registered here: it is
        # the decoder's (or the encoder's) own module, and state_dict holds it under that name
        self._inference_weight: tuple[tuple[int, int], Tensor] | None = None

    @property
    def out_features(self) -> int:
        return len(self.ids)

    def tie(self, table: nn.Embedding) -> None:
        """Read the weight from rows `ids` of `table` from now on; the bias stays this layer's."""
        if table.embedding_dim != self.in_features:
            raise ValueError(f"a tied output layer reads {self.in_features} features, but the "
                             f"table holds embeddings of size {table.embedding_dim}")
        if self.linear is not None:
            self.bias = self.linear.bias
            self.linear = None
        self._table = [table]
        self._inference_weight = None

    @property
    def table(self) -> nn.Embedding | None:
        return self._table[0] if self._table else None

    def untie(self) -> None:
        """Copy the tied weight into a Linear of this layer's own: what int8 quantization
        swaps for its int8 kernels (the copy holds K rows, the table V)."""
        if self.linear is not None:
            return
        weight, bias = self.weight_and_bias()
        self.linear = nn.Linear(self.in_features, self.out_features, device=bias.device,
                                dtype=bias.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.bias, self._table, self._inference_weight = None, [], None

    def forward(self, features: Tensor) -> Tensor:
        """features (N, P) -> logits (N, K)."""
        if self.linear is not None:  # called, not read: int8 swaps it for a packed int8 Linear
            return self.linear(features)
        weight, bias = self.weight_and_bias()
        return F.linear(features, weight, bias)

    def weight_and_bias(self) -> tuple[Tensor, Tensor]:
        """The weight (K, P) and bias (K,) the logits use: the fused training loss reads them."""
        if self.linear is not None:
            return self.linear.weight, self.linear.bias
        return self._tied_weight(), self.bias

    def _tied_weight(self) -> Tensor:
        """Rows `ids` of the table (K, P): the table itself when every id has a row, else a
        gathered copy; search reuses one copy until the table changes (an optimizer step or a
        load bumps its version), so a decoding step gathers nothing."""
        table = self._table[0].weight  # (V, P)
        if len(self.ids) == table.size(0):
            return table
        if torch.is_grad_enabled():
            return table.index_select(0, self.ids)
        key = (table.data_ptr(), table._version)
        if self._inference_weight is None or self._inference_weight[0] != key:
            self._inference_weight = (key, table.index_select(0, self.ids))
        return self._inference_weight[1]

    def extra_repr(self) -> str:
        tied = ", tied" if self.linear is None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}{tied}"


def check_output_ids(ids: Tensor, vocab_size: int) -> None:
    """Raise ValueError unless `ids` (K,) are ascending ids of the vocabulary, each once, that
    begin with the special ids (search masks PAD and BOS and reads EOS by their rows)."""
    if ids.dim() != 1 or len(ids) < FIRST_PIECE_ID or ids.dtype != torch.long:
        raise ValueError(f"output ids must be a 1-d long tensor of at least {FIRST_PIECE_ID} ids")
    if not torch.equal(ids[:FIRST_PIECE_ID], torch.arange(FIRST_PIECE_ID)):
        raise ValueError(f"output ids must begin with the special ids 0..{FIRST_PIECE_ID - 1}")
    if not bool((ids[1:] > ids[:-1]).all()) or int(ids[-1]) >= vocab_size:
        raise ValueError(f"output ids must ascend, each once, below the vocabulary size "
                         f"{vocab_size}")
