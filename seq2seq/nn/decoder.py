"""GRU attention decoder: ``forward`` for teacher forcing, ``step`` for one token of search.

Two styles (``DecoderStyle``):

- ``luong`` (Luong et al. 2015, sec. 3): the GRU reads the previous target embedding, attention
  takes the GRU output as its query, and the "attentional hidden state" tanh(W_c [h; c]) feeds
  the output layer. Without input feeding nothing in training depends on an earlier step's
  attention, so ``forward`` runs the GRU once over the whole target and attends for all steps at
  once: no Python loop over time. ``input_feeding`` (sec. 3.3) concatenates the previous
  attentional state to the GRU input, which needs a per-step loop.
- ``bahdanau`` (Bahdanau et al. 2015, appendix A.1.2): attention is queried with the previous
  decoder state and the context joins the GRU input; a per-step loop.

In both, the output layer reads tanh(W_c [h; c]) after dropout; with tied embeddings
(Press & Wolf 2017) its weight is the target embedding matrix, so that vector has the embedding
size. Per-step loops compute the output layer once, for all steps, after the loop. The output
layer scores the target pieces only (`seq2seq.nn.output_layer`): its logits have a row per
piece of `output_layer.ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.config import DecoderStyle
from seq2seq.nn.attention import CrossAttention
from seq2seq.nn.encoder import EncoderOutput, embedding_init_, run_gru
from seq2seq.nn.output_layer import OutputLayer
from seq2seq.nn.word_dropout import WordDropout
from seq2seq.special_ids import PAD_ID


@dataclass
class Memory:
    """What the decoder attends over, with the scorer's projections computed once per batch."""

    states: Tensor  # (B, S, De) encoder states
    mask: Tensor  # (B, S) bool, True on real source tokens
    keys: Tensor  # attention.project_keys(states)
    values: Tensor  # attention.project_values(states); may be `states` itself

    def select(self, index: Tensor) -> Memory:
        """Rows ``index`` (N,) of every tensor: expands or reorders beams in search."""
        states = self.states.index_select(0, index)
        return Memory(
            states=states,
            mask=self.mask.index_select(0, index),
            keys=states if self.keys is self.states else self.keys.index_select(0, index),
            values=states if self.values is self.states else self.values.index_select(0, index),
        )


@dataclass
class DecoderState:
    hidden: Tensor  # (L, B, H) GRU state
    feed: Tensor | None = None  # (B, P) previous attentional vector (luong input feeding only)

    def select(self, index: Tensor) -> DecoderState:
        """Rows ``index`` (N,) along the batch: expands or reorders beams in search."""
        return DecoderState(
            hidden=self.hidden.index_select(1, index),
            feed=None if self.feed is None else self.feed.index_select(0, index),
        )


class Decoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        attention: CrossAttention,
        style: DecoderStyle = DecoderStyle.luong,
        input_feeding: bool = False,
        embedding_dropout: float = 0.0,
        word_dropout: float = 0.0,
        output_dropout: float = 0.0,
        rnn_dropout: float = 0.0,
        tie_embeddings: bool = False,
        output_ids: Sequence[int] | Tensor | None = None,
    ):
        """`output_ids`: the target pieces the output layer scores (OutputLayer); None: all."""
        super().__init__()
        if input_feeding and style is not DecoderStyle.luong:
            raise ValueError("input feeding is a luong-style option")
        self.style = style
        self.input_feeding = input_feeding
        context_size = attention.output_size
        # the attentional vector tanh(W_c [h; c]); tied output weights need the embedding size
        self.attentional_size = embedding_size if tie_embeddings else hidden_size
        rnn_input_size = embedding_size + (
            context_size if style is DecoderStyle.bahdanau
            else self.attentional_size if input_feeding
            else 0
        )
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD_ID)
        embedding_init_(self.embedding)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.word_dropout = WordDropout(word_dropout)
        self.rnn = nn.GRU(
            rnn_input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=rnn_dropout if num_layers > 1 else 0.0,
        )
        self.attention = attention
        self.combine = nn.Linear(hidden_size + context_size, self.attentional_size, bias=False)
        self.output_dropout = nn.Dropout(output_dropout)
        self.output_layer = OutputLayer(self.attentional_size, vocab_size, output_ids)
        if tie_embeddings:
            self.output_layer.tie(self.embedding)

    def share_embedding(self, embedding: nn.Embedding) -> None:
        """Read target words from `embedding` (the encoder's), and write them with it too if the
        output layer was tied to this decoder's own table."""
        if self.output_layer.table is self.embedding:
            self.output_layer.tie(embedding)
        self.embedding = embedding

    def init(self, encoded: EncoderOutput) -> tuple[Memory, DecoderState]:
        """Memory (with key/value projections) and the first state for a batch of sources."""
        states = encoded.states
        memory = Memory(
            states=states,
            mask=encoded.mask,
            keys=self.attention.project_keys(states),
            values=self.attention.project_values(states),
        )
        feed = None
        if self.input_feeding:
            feed = states.new_zeros(states.shape[0], self.attentional_size)
        return memory, DecoderState(hidden=encoded.hidden, feed=feed)

    def forward(
        self,
        tgt_in: Tensor,
        memory: Memory,
        state: DecoderState,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: tgt_in (B, T) -> logits (B, T, K) over the output layer's pieces,
        weights (B, heads, T, S) or None."""
        attentional, weights = self.features(tgt_in, memory, state, need_weights)  # (B, T, P)
        return self.output_layer(attentional), weights

    def features(
        self, tgt_in: Tensor, memory: Memory, state: DecoderState, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """The attentional vectors (after output dropout) that the output layer reads:
        tgt_in (B, T) -> (B, T, P), weights (B, heads, T, S) or None."""
        embedded = self._embed(tgt_in)  # (B, T, E)
        if self.style is DecoderStyle.luong and not self.input_feeding:
            outputs, _ = run_gru(self.rnn, embedded, state.hidden)  # (B, T, H), all steps
            context, weights = self._attend(outputs, memory, need_weights)  # (B, T, C)
            return self._attentional(outputs, context), weights
        steps, step_weights = [], []
        for t in range(tgt_in.shape[1]):
            attentional, state, weights = self._step(
                embedded[:, t : t + 1], state, memory, need_weights
            )
            steps.append(attentional)
            step_weights.append(weights)
        weights = torch.cat(step_weights, dim=2) if need_weights else None  # (B, h, T, S)
        return torch.cat(steps, dim=1), weights

    def step(
        self, prev: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One token: prev (N,) ids -> logits (N, K) over the output layer's pieces, the next
        state, weights (N, heads, S).

        The memory has N rows, or N / G rows shared by G consecutive rows (beams) each.
        """
        features, state, weights = self.step_features(prev, state, memory, need_weights)
        return self.output_layer(features), state, weights

    def step_features(
        self, prev: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """`step` up to the output layer: features (N, P), whose logits are
        `self.output_layer(features)`; search applies it a slice of rows at a time."""
        embedded = self._embed(prev[:, None])  # (N, 1, E)
        attentional, state, weights = self._step(embedded, state, memory, need_weights)
        return attentional.squeeze(1), state, None if weights is None else weights.squeeze(2)

    def _embed(self, ids: Tensor) -> Tensor:
        """ids (B, T) -> embeddings (B, T, E), after word and element dropout."""
        return self.embedding_dropout(self.word_dropout(self.embedding(ids)))

    def _step(
        self, embedded: Tensor, state: DecoderState, memory: Memory, need_weights: bool
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """embedded (B, 1, E) -> attentional (B, 1, P), next state, weights (B, h, 1, S)."""
        if self.style is DecoderStyle.bahdanau:
            query = state.hidden[-1].unsqueeze(1)  # (B, 1, H) previous top-layer state
            context, weights = self._attend(query, memory, need_weights)  # (B, 1, C)
            inputs = torch.cat([embedded, context.to(embedded.dtype)], dim=-1)
            output, hidden = run_gru(self.rnn, inputs, state.hidden)  # (B, 1, H)
            return self._attentional(output, context), DecoderState(hidden), weights
        inputs = embedded
        if self.input_feeding:
            inputs = torch.cat([embedded, state.feed.unsqueeze(1).to(embedded.dtype)], dim=-1)
        output, hidden = run_gru(self.rnn, inputs, state.hidden)  # (B, 1, H)
        context, weights = self._attend(output, memory, need_weights)  # (B, 1, C)
        attentional = self._attentional(output, context)  # (B, 1, P)
        feed = attentional.squeeze(1) if self.input_feeding else None
        return attentional, DecoderState(hidden, feed), weights

    def _attend(
        self, query: Tensor, memory: Memory, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        """query (N, T, Dq) over a memory of B rows -> context (N, T, C), weights (N, h, T, S).

        N may be a multiple G of B: beam search keeps one memory row per sentence for the G
        consecutive rows of its beams, which attend as G * T queries of that row, so the memory
        is neither copied per beam nor reordered when the beams are.
        """
        N, T, _ = query.shape
        B = memory.mask.size(0)
        if N == B:
            return self.attention(query, memory.keys, memory.values, memory.mask, need_weights)
        if N % B:
            raise ValueError(f"{N} decoder rows cannot share a memory of {B} rows")
        G = N // B
        context, weights = self.attention(query.reshape(B, G * T, -1), memory.keys,
                                          memory.values, memory.mask, need_weights)
        if weights is not None:  # (B, h, G * T, S) -> (N, h, T, S)
            h, S = weights.size(1), weights.size(3)
            weights = weights.view(B, h, G, T, S).transpose(1, 2).reshape(N, h, T, S)
        return context.reshape(N, T, -1), weights

    def _attentional(self, output: Tensor, context: Tensor) -> Tensor:
        """tanh(W_c [h; c]) with output dropout (Luong et al. 2015, eq. 5)."""
        combined = torch.cat([output, context.to(output.dtype)], dim=-1)  # (B, T, H + C)
        return self.output_dropout(torch.tanh(self.combine(combined)))
