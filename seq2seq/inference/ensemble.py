"""Several trained models that decode as one (an ensemble): at every step of greedy or beam
search the next-token distribution is the mean of the members' log-probabilities (renormalized
by the search's log-softmax), as OpenNMT-py and fairseq do.

`Ensemble` offers what search reads of a `Seq2Seq`: `start`, `decoder.step_features` and
`decoder.output_layer`. Its memory and state hold one per member; its features are the members'
features side by side, which its output layer splits again, so search slices rows of them as it
does for one model and needs no ensemble case. Members share one target vocabulary (the caller
checks their subword models), though not always the pieces their output layers score (models
trained on other targets); their sizes and attention may differ. Attention weights (for
plots) are the members' mean, per head when all have as many heads, else over heads first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.nn.decoder import DecoderState, Memory
from seq2seq.nn.model import Seq2Seq


@dataclass
class EnsembleMemory:
    members: list[Memory]

    def select(self, index: Tensor) -> EnsembleMemory:
        return EnsembleMemory([memory.select(index) for memory in self.members])


@dataclass
class EnsembleState:
    members: list[DecoderState]

    def select(self, index: Tensor) -> EnsembleState:
        return EnsembleState([state.select(index) for state in self.members])


class Ensemble(nn.Module):
    """Members decoding together; see the module docstring."""

    def __init__(self, members: Sequence[Seq2Seq]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)
        self.decoder = _EnsembleDecoder(self.members)

    def start(self, src: Tensor, src_lengths: Tensor) -> tuple[EnsembleMemory, EnsembleState]:
        """Encode the source once per member: their memories and first decoder states."""
        started = [member.start(src, src_lengths) for member in self.members]
        return (EnsembleMemory([memory for memory, _ in started]),
                EnsembleState([state for _, state in started]))


class _EnsembleDecoder(nn.Module):
    def __init__(self, members: nn.ModuleList) -> None:
        super().__init__()
        self._members = list(members)  # a plain list: the members' weights belong to Ensemble
        self.output_layer = _MeanLogProbabilities(self._members)

    def step_features(self, prev: Tensor, state: EnsembleState, memory: EnsembleMemory,
                      need_weights: bool = True
                      ) -> tuple[Tensor, EnsembleState, Tensor | None]:
        """Each member's step: features (N, sum of P_i), states, mean weights (N, h, S)."""
        features, states, weights = [], [], []
        for member, member_state, member_memory in zip(self._members, state.members,
                                                       memory.members, strict=True):
            member_features, member_state, member_weights = member.decoder.step_features(
                prev, member_state, member_memory, need_weights)
            features.append(member_features)
            states.append(member_state)
            weights.append(member_weights)
        return torch.cat(features, dim=-1), EnsembleState(states), _mean_weights(weights)


class _MeanLogProbabilities(nn.Module):
    """features (N, sum of P_i) -> the mean of the members' log-softmax outputs (N, K) over
    `ids`, the pieces that any member scores. A piece that a member has no row for (members
    trained on other targets) has log-probability -inf under it, so the ensemble never
    chooses it."""

    def __init__(self, members: list[Seq2Seq]) -> None:
        super().__init__()
        # The members, not their output layers: int8 quantization swaps those layers for others.
        self._members = members
        layers = [member.decoder.output_layer for member in members]
        self._sizes = [layer.in_features for layer in layers]
        ids = layers[0].ids
        if any(not torch.equal(layer.ids, ids) for layer in layers[1:]):
            ids = torch.unique(torch.cat([layer.ids for layer in layers]))  # ascending
        self.register_buffer("ids", ids, persistent=False)  # (K,)
        # each member's rows among `ids`, or None where they are the same
        self._columns = [None if torch.equal(layer.ids, ids)
                         else torch.searchsorted(ids, layer.ids) for layer in layers]

    def forward(self, features: Tensor) -> Tensor:
        total = None
        for member, part, columns in zip(self._members, features.split(self._sizes, dim=-1),
                                         self._columns, strict=True):
            log_probs = member.decoder.output_layer(part).float().log_softmax(dim=-1)  # (N, K_i)
            if columns is not None:
                log_probs = log_probs.new_full((len(part), len(self.ids)), float("-inf")) \
                    .index_copy_(1, columns.to(part.device), log_probs)  # (N, K)
            total = log_probs if total is None else total.add_(log_probs)
        return total.div_(len(self._members))


def _mean_weights(weights: list[Tensor | None]) -> Tensor | None:
    """The members' attention weights (N, h_i, S) averaged: (N, h, S), or (N, 1, S) when their
    numbers of heads differ."""
    if weights[0] is None:
        return None
    if len({w.size(1) for w in weights}) > 1:
        weights = [w.mean(dim=1, keepdim=True) for w in weights]
    return torch.stack(weights).mean(dim=0)
