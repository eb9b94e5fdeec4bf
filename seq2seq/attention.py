"""Cross-attention scorers: one class per paper, one shared call.

Every scorer is called as::

    context, weights = attention(query, keys, values, mask)
    # query (B, T, Dq), keys (B, S, Dk), values (B, S, Dv), mask (B, S) bool, True on real tokens
    # context (B, T, attention.output_size), weights (B, heads, T, S) or None

and exposes ``project_keys(keys)`` / ``project_values(values)``. A decoder calls them once per
batch and passes the results back in as ``projected_keys`` / ``projected_values``, so a per-step
decoder never re-projects the source; nothing is stored on the module (JoeyNMT keeps them on
``self`` and needs a priming call, which breaks beam search reordering and re-entrancy).

Padded source positions get weight exactly 0: scores there are set to ``finfo(dtype).min``, which
underflows to 0 in the softmax in every float dtype (unlike ``-1e9``, which overflows in fp16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import AttentionConfig, AttentionType, ConfigError


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
    dropout: float  # probability of dropping an attention weight in training

    def project_keys(self, keys: Tensor) -> Tensor:
        """keys (B, S, Dk) -> what ``forward`` accepts as ``projected_keys``; once per batch."""
        return keys

    def project_values(self, values: Tensor) -> Tensor:
        """values (B, S, Dv) -> what ``forward`` accepts as ``projected_values``; once per batch."""
        return values

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

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, A)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        need_weights: bool = True,
        projected_keys: Tensor | None = None,
        projected_values: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        values = values if projected_values is None else projected_values
        queries = self.query_layer(query)  # (B, T, A)
        scores = additive_scores(queries, projected_keys, self.energy_layer.weight[0])  # (B, T, S)
        scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        context = torch.bmm(F.dropout(weights, self._dropout()), values)
        return context, weights.unsqueeze(1) if need_weights else None


class _BilinearAttention(CrossAttention):
    """score(q, k) = scale * q . (W k), W learned or the identity; W k once per batch."""

    def __init__(self, query_size: int, key_map: nn.Module, scaled: bool, dropout: float,
                 value_size: int):
        super().__init__()
        self.key_layer = key_map
        self.scale = query_size**-0.5 if scaled else 1.0
        self.dropout = dropout
        self.output_size = value_size

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, Dq)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        need_weights: bool = True,
        projected_keys: Tensor | None = None,
        projected_values: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        values = values if projected_values is None else projected_values
        context, weights = dot_product_attention(
            query.unsqueeze(1),  # one head: (B, 1, T, Dq)
            projected_keys.unsqueeze(1),
            values.unsqueeze(1),
            mask,
            self.scale,
            self._dropout(),
            need_weights,
        )
        return context.squeeze(1), weights  # (B, T, Dv), (B, 1, T, S)


class DotProductAttention(_BilinearAttention):
    """Luong et al. 2015 (eq. 8, "dot"): score(q, k) = q . k, divided by sqrt(d) when ``scaled``.

    Scaling (Vaswani et al. 2017, sec. 3.2.1) keeps the softmax out of saturation as d grows.
    Luong's dot needs keys of the query's size. A bidirectional encoder's states are twice the
    decoder's width, so in that case keys are first mapped to the query size by a learned linear
    map W (without bias): the score is then q . (W k), the same form as ``GeneralAttention``.
    """

    def __init__(self, query_size: int, key_size: int, scaled: bool = True, dropout: float = 0.0):
        key_map = (
            nn.Identity() if key_size == query_size
            else nn.Linear(key_size, query_size, bias=False)
        )
        super().__init__(query_size, key_map, scaled, dropout, value_size=key_size)


class GeneralAttention(_BilinearAttention):
    """Luong et al. 2015 (eq. 8, "general"): score(q, k) = q . W k, optionally scaled by 1/sqrt(d).

    W k is computed once per batch (``project_keys``), so each step costs one dot product.
    """

    def __init__(self, query_size: int, key_size: int, scaled: bool = False, dropout: float = 0.0):
        key_map = nn.Linear(key_size, query_size, bias=False)
        super().__init__(query_size, key_map, scaled, dropout, value_size=key_size)


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

    def project_keys(self, keys: Tensor) -> Tensor:
        return self._split_heads(self.key_layer(keys), self.head_dim)  # (B, h, S, dk)

    def project_values(self, values: Tensor) -> Tensor:
        return self._split_heads(self.value_layer(values), self.value_dim)  # (B, h, S, dv)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        need_weights: bool = True,
        projected_keys: Tensor | None = None,
        projected_values: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        B, T, _ = query.shape
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        if projected_values is None:
            projected_values = self.project_values(values)
        queries = self._split_heads(self.query_layer(query), self.head_dim)  # (B, h, T, dk)
        context, weights = dot_product_attention(
            queries,
            projected_keys,
            projected_values,
            mask,
            self.head_dim**-0.5,
            self._dropout(),
            need_weights,
        )
        context = context.transpose(1, 2).reshape(B, T, self.num_heads * self.value_dim)
        return self.output_layer(context), weights  # (B, T, output_size), (B, h, T, S)


def build_attention(cfg: AttentionConfig, query_size: int, key_size: int) -> CrossAttention:
    """The scorer named by ``cfg.type``, for queries of ``query_size`` over keys of ``key_size``.

    The one place that maps names to classes; a new scorer is a class, a YAML file in
    conf/attention/ and a line here.
    """
    builders = {
        AttentionType.additive: lambda: AdditiveAttention(
            query_size, key_size, cfg.attention_size or query_size, cfg.dropout
        ),
        AttentionType.dot: lambda: DotProductAttention(
            query_size, key_size, cfg.scaled, cfg.dropout
        ),
        AttentionType.general: lambda: GeneralAttention(
            query_size, key_size, cfg.scaled, cfg.dropout
        ),
        AttentionType.multihead: lambda: MultiHeadCrossAttention(
            query_size,
            key_size,
            cfg.num_heads,
            _head_dim(cfg, query_size),
            cfg.value_dim or _head_dim(cfg, query_size),
            cfg.dropout,
        ),
    }
    return builders[cfg.type]()


def _head_dim(cfg: AttentionConfig, query_size: int) -> int:
    if cfg.head_dim is not None:
        return cfg.head_dim
    if query_size % cfg.num_heads:
        raise ConfigError(
            f"attention.num_heads={cfg.num_heads} does not divide the decoder hidden size "
            f"{query_size}: set attention.head_dim (or pick a divisor)"
        )
    return query_size // cfg.num_heads
