"""The parameter count of the model that the configs describe, from the settings alone.

No torch and no weights: a config can be sized, and refused, before anything is built or any data
is read (`model.decoder_layers=1000000000` would ask for 32 TB). Each count mirrors a module's
layers; tests/test_model.py checks them against `Seq2Seq.parameter_counts` for every variant.
Python ints: no size overflows here.
"""

from __future__ import annotations

from collections.abc import Callable

from seq2seq.config import (
    AdditiveAttentionConfig,
    AttentionConfig,
    DecoderStyle,
    DotAttentionConfig,
    GeneralAttentionConfig,
    ModelConfig,
    MultiHeadAttentionConfig,
)


def linear(in_size: int, out_size: int, bias: bool = True) -> int:
    """nn.Linear: weight (out, in) and bias (out,)."""
    return out_size * in_size + (out_size if bias else 0)


def gru(input_size: int, hidden_size: int, num_layers: int, directions: int) -> int:
    """nn.GRU: per layer and direction, W_ih (3H, in), W_hh (3H, H) and two biases (3H,); the
    layers above the first read the directions' states concatenated."""
    def layer(layer_input: int) -> int:
        return 3 * hidden_size * (layer_input + hidden_size + 2)

    return directions * (layer(input_size)
                         + (num_layers - 1) * layer(directions * hidden_size))


def multihead(query_size: int, key_size: int, num_heads: int, head_dim: int,
              value_dim: int) -> int:
    """MultiHeadCrossAttention: query, key and value projections and the output layer back to the
    value (key) size."""
    return (linear(query_size, num_heads * head_dim) + linear(key_size, num_heads * head_dim)
            + linear(key_size, num_heads * value_dim) + linear(num_heads * value_dim, key_size))


def attention(cfg: AttentionConfig, query_size: int, key_size: int) -> int:
    """The scorer's parameters, with the defaults of nn.attention.build_attention."""
    def heads(c: MultiHeadAttentionConfig) -> int:
        head_dim = c.head_dim or query_size // c.num_heads
        return multihead(query_size, key_size, c.num_heads, head_dim, c.value_dim or head_dim)

    counts: dict[type[AttentionConfig], Callable] = {
        AdditiveAttentionConfig: lambda c: (c.attention_size or query_size)
        * (query_size + key_size + 1),
        DotAttentionConfig: lambda c: 0,
        GeneralAttentionConfig: lambda c: linear(key_size, query_size, bias=False),
        MultiHeadAttentionConfig: heads,
    }
    return counts[type(cfg)](cfg)


def parameter_counts(model: ModelConfig, attention_cfg: AttentionConfig, src_vocab_size: int,
                     tgt_vocab_size: int) -> dict[str, int]:
    """What `build_model(...).parameter_counts()` will say, by the same parts: a shared or tied
    weight counts once, under embeddings. The output layer counts a row per target piece: an
    upper bound, as a trained model scores only those its training targets use."""
    E, H, L_dec = model.embedding_size, model.hidden_size, model.decoder_layers
    states = 2 * H  # the encoder's [forward; backward] states: attention keys and context
    encoder = gru(E, H, model.encoder_layers, directions=2) + linear(states, L_dec * H)
    if model.encoder_self_attention:
        head_dim = states // model.self_attention_heads
        encoder += multihead(states, states, model.self_attention_heads, head_dim, head_dim)
        encoder += 2 * states  # LayerNorm
    attentional = E if model.tie_embeddings else H  # what the output layer reads
    rnn_input = E + (states if model.decoder_style is DecoderStyle.bahdanau
                     else attentional if model.input_feeding else 0)
    counts = {
        "embeddings": src_vocab_size * E + (0 if model.share_embeddings else tgt_vocab_size * E),
        "encoder": encoder,
        "attention": attention(attention_cfg, H, states),
        "decoder": gru(rnn_input, H, L_dec, directions=1)
        + linear(H + states, attentional, bias=False),
        "output": tgt_vocab_size  # the bias; a tied weight is the target embedding
        + (0 if model.tie_embeddings else attentional * tgt_vocab_size),
    }
    return {**counts, "total": sum(counts.values())}
