"""Cross-attention scorers: one class per paper, one shared call.

Every scorer follows one contract::

    keys = attention.project_keys(states)      # once per batch: states (B, S, De)
    values = attention.project_values(states)  # once per batch
    context, weights = attention(query, keys, values, mask, need_weights)
    # query (B, T, Dq), mask (B, S) bool, True on real tokens
    # context (B, T, attention.output_size), weights (B, attention.num_heads, T, S) or None

The caller keeps the projected keys and values (a per-step decoder never re-projects the
source); nothing is stored on the module (JoeyNMT keeps them on ``self`` and needs a priming
call, which breaks beam search reordering and re-entrancy).

A new scorer is a class here with its line in ``build_attention`` (the one registration), its
settings class in ``seq2seq.config`` and a YAML file in ``conf/attention/``; the tests and the
ablation pick it up from there.

Padded source positions get weight exactly 0: scores there are set to ``finfo(dtype).min``, which
underflows to 0 in the softmax in every float dtype (unlike ``-1e9``, which overflows in fp16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import (
    AdditiveAttentionConfig,
    AttentionConfig,
    DotAttentionConfig,
    GeneralAttentionConfig,
    MultiHeadAttentionConfig,
)


def dot_product_attention(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    mask: Tensor,
    scale: float,
    dropout: float,
    need_weights: bool,
) -> tuple[Tensor, Tensor | None]:
    """softmax(scale * q k^T) v over the source, per head (Luong et al. 2015; Vaswani et al. 2017).

    query (B, h, T, D), keys (B, h, S, D), values (B, h, S, Dv), mask (B, S)
    -> context (B, h, T, Dv), weights (B, h, T, S) or None.

    Without weights this is one fused ``F.scaled_dot_product_attention`` call; the weights, when
    asked for, come from an explicit softmax (the fused kernels never materialize them).
    ``dropout`` is the probability to use now (0 in eval mode); it drops weights, not scores.
    """
    key_mask = mask[:, None, None, :]  # (B, 1, 1, S) broadcast over heads and target steps
    if not need_weights:
        context = F.scaled_dot_product_attention(
            query, keys, values, attn_mask=key_mask, dropout_p=dropout, scale=scale
        )
        return context, None
    scores = torch.matmul(query, keys.transpose(-1, -2)) * scale  # (B, h, T, S)
    scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    context = torch.matmul(F.dropout(weights, dropout), values)  # (B, h, T, Dv)
    return context, weights


class CrossAttention(nn.Module):
    """The contract every scorer follows; the default projections are the identity."""

    output_size: int  # size of the context vectors it returns
    num_heads: int = 1  # the heads dimension of the weights it returns
    dropout: float  # probability of dropping an attention weight in training

    def project_keys(self, states: Tensor) -> Tensor:
        """Encoder states (B, S, De) -> the keys ``forward`` takes; once per batch."""
        return states

    def project_values(self, states: Tensor) -> Tensor:
        """Encoder states (B, S, De) -> the values ``forward`` takes; once per batch."""
        return states

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """query (B, T, Dq), projected keys and values, mask (B, S) ->
        context (B, T, output_size), weights (B, num_heads, T, S) or None."""
        raise NotImplementedError

    def _dropout(self) -> float:
        return self.dropout if self.training else 0.0


# energies per chunk in additive attention: 2**23 floats = 32 MB; more on a GPU, where fewer,
# larger kernels pay and memory is plentiful
ENERGY_CHUNK_ELEMENTS = 2**23
ENERGY_CHUNK_ELEMENTS_CUDA = 2**27


def additive_scores(queries: Tensor, keys: Tensor, v: Tensor) -> Tensor:
    """v . tanh(q_t + k_s) for every target step t and source position s.

    queries (B, T, A), keys (B, S, A), v (A,) -> scores (B, T, S).

    The energies tanh(q_t + k_s) form a (B, T, S, A) tensor: for a 4,000-token CPU batch that is
    ~100 MB, and autograd would keep it, its tanh and their gradients (~4x). Here they exist
    one chunk of target steps at a time, and backward recomputes each chunk's energies
    (activation recomputation, Chen et al. 2016) instead of storing them.
    """
    B, _, A = queries.shape
    S = keys.shape[1]
    budget = ENERGY_CHUNK_ELEMENTS_CUDA if queries.is_cuda else ENERGY_CHUNK_ELEMENTS
    steps = max(1, budget // max(B * S * A, 1))  # target steps per chunk
    if torch.is_grad_enabled() and any(t.requires_grad for t in (queries, keys, v)):
        return _AdditiveScores.apply(queries, keys, v, steps)
    return _chunked_scores(queries, keys.to(queries.dtype), v.to(queries.dtype), steps)


def _energies(queries: Tensor, keys: Tensor) -> Tensor:
    """queries (B, t, A), keys (B, S, A) -> tanh(q + k) (B, t, S, A)."""
    return (queries.unsqueeze(2) + keys.unsqueeze(1)).tanh_()


def _chunked_scores(queries: Tensor, keys: Tensor, v: Tensor, steps: int) -> Tensor:
    return torch.cat([
        torch.matmul(_energies(queries[:, start:start + steps], keys), v)  # (B, t, S)
        for start in range(0, queries.shape[1], steps)
    ], dim=1)


class _AdditiveScores(torch.autograd.Function):
    """additive_scores with a backward that recomputes the energies chunk by chunk."""

    @staticmethod
    def forward(ctx, queries: Tensor, keys: Tensor, v: Tensor, steps: int) -> Tensor:
        dtype = queries.dtype  # under autocast the projections come in half precision
        keys, v_ = keys.to(dtype), v.to(dtype)
        ctx.save_for_backward(queries, keys, v_)
        ctx.steps, ctx.dtypes = steps, (keys.dtype, v.dtype)
        return _chunked_scores(queries, keys, v_, steps)

    @staticmethod
    def backward(ctx, grad_scores: Tensor):
        queries, keys, v = ctx.saved_tensors
        keys_dtype, v_dtype = ctx.dtypes
        grad_scores = grad_scores.to(queries.dtype)  # (B, T, S)
        grad_queries = torch.empty_like(queries)  # (B, T, A)
        grad_keys = torch.zeros(keys.shape, dtype=torch.float32, device=keys.device)  # (B, S, A)
        grad_v = torch.zeros(v.shape, dtype=torch.float32, device=v.device)  # (A,)
        for start in range(0, queries.shape[1], ctx.steps):
            energies = _energies(queries[:, start:start + ctx.steps], keys)  # (B, t, S, A)
            g = grad_scores[:, start:start + ctx.steps]  # (B, t, S)
            grad_v += torch.einsum("btsa,bts->a", energies, g).float()
            # d score / d (q + k) = v * (1 - tanh^2), scaled by the incoming gradient; in place
            grad_energy = energies.square_().neg_().add_(1).mul_(v).mul_(g.unsqueeze(-1))
            grad_queries[:, start:start + ctx.steps] = grad_energy.sum(dim=2)
            grad_keys += grad_energy.sum(dim=1).float()
        return grad_queries, grad_keys.to(keys_dtype), grad_v.to(v_dtype), None


class AdditiveAttention(CrossAttention):
    """Bahdanau et al. 2015 (eq. 6, appendix A.1.2): score(q, k) = v . tanh(W_q q + W_k k).

    All T queries are scored at once (``additive_scores``, in chunks of target steps), so a
    decoder that queries after its GRU (Luong style) needs no time loop even with this scorer.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int, dropout: float = 0.0):
        super().__init__()
        self.query_layer = nn.Linear(query_size, attention_size, bias=False)
        self.key_layer = nn.Linear(key_size, attention_size, bias=False)
        self.energy_layer = nn.Linear(attention_size, 1, bias=False)
        self.dropout = dropout
        self.output_size = key_size

    def project_keys(self, states: Tensor) -> Tensor:
        return self.key_layer(states)  # (B, S, A)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        queries = self.query_layer(query)  # (B, T, A)
        scores = additive_scores(queries, keys, self.energy_layer.weight[0])  # (B, T, S)
        scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        context = torch.bmm(F.dropout(weights, self._dropout()), values)
        return context, weights.unsqueeze(1) if need_weights else None


class _OneHeadDotProduct(CrossAttention):
    """What "dot" and "general" share: score = scale * q . k over keys of the query's size
    (made by ``project_keys``), one head."""

    def __init__(self, query_size: int, key_size: int, scaled: bool, dropout: float):
        super().__init__()
        self.scale = query_size**-0.5 if scaled else 1.0
        self.dropout = dropout
        self.output_size = key_size

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        context, weights = dot_product_attention(
            query.unsqueeze(1),  # one head: (B, 1, T, Dq)
            keys.unsqueeze(1),
            values.unsqueeze(1),
            mask,
            self.scale,
            self._dropout(),
            need_weights,
        )
        return context.squeeze(1), weights  # (B, T, Dv), (B, 1, T, S)


class DotProductAttention(_OneHeadDotProduct):
    """Luong et al. 2015 (eq. 8, "dot"): score(q, k) = q . k, with no parameters; divided by
    sqrt(d) when ``scaled`` (Vaswani et al. 2017, sec. 3.2.1: it keeps the softmax out of
    saturation as d grows).

    q . k needs keys of the query's size. A bidirectional encoder's states [h_fwd; h_bwd] are
    twice the decoder's width, so the key of a source position is the sum of its two directions,
    h_fwd + h_bwd (as the PyTorch chatbot tutorial merges them): q . (h_fwd + h_bwd) is still
    parameter-free, and the context still averages the full states. Learning a map from the
    states to the query size instead would make q . (W k), which is "general".
    """

    def __init__(self, query_size: int, key_size: int, scaled: bool = True, dropout: float = 0.0):
        if key_size not in (query_size, 2 * query_size):
            raise ValueError(f"dot attention needs keys of the query size {query_size} or of "
                             f"twice it (two directions), not {key_size}")
        super().__init__(query_size, key_size, scaled, dropout)
        self.directions = key_size // query_size

    def project_keys(self, states: Tensor) -> Tensor:
        return states.unflatten(-1, (self.directions, -1)).sum(dim=2)  # (B, S, Dq)


class GeneralAttention(_OneHeadDotProduct):
    """Luong et al. 2015 (eq. 8, "general"): score(q, k) = q . W k, optionally scaled by 1/sqrt(d).

    W k is computed once per batch (``project_keys``), so each step costs one dot product.
    """

    def __init__(self, query_size: int, key_size: int, scaled: bool = False, dropout: float = 0.0):
        super().__init__(query_size, key_size, scaled, dropout)
        self.key_layer = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, states: Tensor) -> Tensor:
        return self.key_layer(states)  # (B, S, Dq)


class MultiHeadCrossAttention(CrossAttention):
    """Vaswani et al. 2017 (sec. 3.2.2): h heads of scaled dot-product attention.

    Queries, keys and values are projected per head (``head_dim`` for queries and keys,
    ``value_dim`` for values), the heads' contexts are concatenated and projected to
    ``output_size`` (default: the value size, so it drops in where the other scorers go).
    Without weights it runs ``F.scaled_dot_product_attention``; with them, an explicit softmax
    whose per-head weights (B, h, T, S) are returned for plots. Dropout acts on the weights.
    """

    def __init__(
        self,
        query_size: int,
        key_size: int,
        num_heads: int,
        head_dim: int,
        value_dim: int,
        dropout: float = 0.0,
        value_size: int | None = None,
        output_size: int | None = None,
    ):
        super().__init__()
        value_size = key_size if value_size is None else value_size
        self.output_size = value_size if output_size is None else output_size
        self.num_heads, self.head_dim, self.value_dim = num_heads, head_dim, value_dim
        self.query_layer = nn.Linear(query_size, num_heads * head_dim)
        self.key_layer = nn.Linear(key_size, num_heads * head_dim)
        self.value_layer = nn.Linear(value_size, num_heads * value_dim)
        self.output_layer = nn.Linear(num_heads * value_dim, self.output_size)
        self.dropout = dropout

    def _split_heads(self, x: Tensor, size: int) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, size).transpose(1, 2)  # (B, h, L, size)

    def project_keys(self, states: Tensor) -> Tensor:
        return self._split_heads(self.key_layer(states), self.head_dim)  # (B, h, S, dk)

    def project_values(self, states: Tensor) -> Tensor:
        return self._split_heads(self.value_layer(states), self.value_dim)  # (B, h, S, dv)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        B, T, _ = query.shape
        queries = self._split_heads(self.query_layer(query), self.head_dim)  # (B, h, T, dk)
        context, weights = dot_product_attention(
            queries,
            keys,
            values,
            mask,
            self.head_dim**-0.5,
            self._dropout(),
            need_weights,
        )
        context = context.transpose(1, 2).reshape(B, T, self.num_heads * self.value_dim)
        return self.output_layer(context), weights  # (B, T, output_size), (B, h, T, S)


def build_attention(cfg: AttentionConfig, query_size: int, key_size: int) -> CrossAttention:
    """The scorer that ``cfg`` describes, for queries of ``query_size`` over encoder states of
    ``key_size``: the one place that maps settings to modules (config sizes are checked at load).
    """
    builders = {
        AdditiveAttentionConfig: lambda c: AdditiveAttention(
            query_size, key_size, c.attention_size or query_size, c.dropout),
        DotAttentionConfig: lambda c: DotProductAttention(
            query_size, key_size, c.scaled, c.dropout),
        GeneralAttentionConfig: lambda c: GeneralAttention(
            query_size, key_size, c.scaled, c.dropout),
        MultiHeadAttentionConfig: lambda c: MultiHeadCrossAttention(
            query_size, key_size, c.num_heads, c.head_dim or query_size // c.num_heads,
            c.value_dim or c.head_dim or query_size // c.num_heads, c.dropout),
    }
    return builders[type(cfg)](cfg)
