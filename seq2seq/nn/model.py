"""The encoder-decoder model, and the one function that builds it from configs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from seq2seq.config import AttentionConfig, ModelConfig
from seq2seq.nn.attention import build_attention
from seq2seq.nn.decoder import Decoder, DecoderState, Memory
from seq2seq.nn.encoder import Encoder, EncoderOutput


class Seq2Seq(nn.Module):
    """Bidirectional GRU encoder + GRU attention decoder.

    Training calls ``forward`` (teacher forcing); search calls ``start`` once and then
    ``decoder.step`` per token.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """src (B, S), src_lengths (B,) -> EncoderOutput."""
        return self.encoder(src, src_lengths)

    def start(self, src: Tensor, src_lengths: Tensor) -> tuple[Memory, DecoderState]:
        """Encode and set up decoding: the memory to attend over and the first decoder state."""
        return self.decoder.init(self.encode(src, src_lengths))

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: logits (B, T, K) over the output layer's K pieces for tgt_in (B, T),
        weights (B, heads, T, S) or None.

        Training does not come here: seq2seq.training.loss.SequenceLoss runs the output layer fused
        with the loss, on real target tokens only.
        """
        memory, state = self.start(src, src_lengths)
        return self.decoder(tgt_in, memory, state, need_weights)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters by part; a tied weight counts once, under embeddings."""
        parts = {  # order matters: a parameter counts in the first part that holds it
            "embeddings": [self.encoder.embedding, self.decoder.embedding],
            "encoder": [self.encoder],
            "attention": [self.decoder.attention],
            "output": [self.decoder.output_layer],
            "decoder": [self.decoder],
        }
        seen: set[int] = set()
        counts: dict[str, int] = {}
        for name, modules in parts.items():
            counts[name] = 0
            for module in modules:
                for parameter in module.parameters():
                    if id(parameter) not in seen:
                        seen.add(id(parameter))
                        counts[name] += parameter.numel()
        order = ("embeddings", "encoder", "attention", "decoder", "output")
        counts = {name: counts[name] for name in order}
        counts["total"] = sum(p.numel() for p in self.parameters())  # shared weights once
        return counts


def saved_output_ids(weights: dict[str, Tensor]) -> Tensor | None:
    """The output layer's ids in a saved state dict, which the model must be built with before
    it loads the weights; None if they are missing (the weights then do not fit)."""
    return weights.get("decoder.output_layer.ids")


def build_model(
    model_cfg: ModelConfig,
    attention_cfg: AttentionConfig,
    src_vocab_size: int,
    tgt_vocab_size: int,
    output_ids: Sequence[int] | Tensor | None = None,
) -> Seq2Seq:
    """The model the configs describe: decoder hidden size H, encoder states 2H; its output
    layer scores the target pieces `output_ids` (ascending; see seq2seq.nn.output_layer), or
    every piece when None."""
    hidden = model_cfg.hidden_size
    heads = model_cfg.self_attention_heads if model_cfg.encoder_self_attention else None
    encoder = Encoder(
        src_vocab_size,
        model_cfg.embedding_size,
        hidden,
        model_cfg.encoder_layers,
        decoder_hidden_size=hidden,
        decoder_layers=model_cfg.decoder_layers,
        embedding_dropout=model_cfg.embedding_dropout,
        word_dropout=model_cfg.word_dropout,
        rnn_dropout=model_cfg.rnn_dropout,
        self_attention_heads=heads,
    )
    attention = build_attention(attention_cfg, query_size=hidden, key_size=encoder.output_size)
    decoder = Decoder(
        tgt_vocab_size,
        model_cfg.embedding_size,
        hidden,
        model_cfg.decoder_layers,
        attention,
        style=model_cfg.decoder_style,
        input_feeding=model_cfg.input_feeding,
        embedding_dropout=model_cfg.embedding_dropout,
        word_dropout=model_cfg.word_dropout,
        output_dropout=model_cfg.output_dropout,
        rnn_dropout=model_cfg.rnn_dropout,
        tie_embeddings=model_cfg.tie_embeddings,
        output_ids=output_ids,
    )
    if model_cfg.share_embeddings:
        if src_vocab_size != tgt_vocab_size:
            raise ValueError(f"model.share_embeddings needs one vocabulary, not {src_vocab_size} "
                             f"source and {tgt_vocab_size} target subwords")
        decoder.share_embedding(encoder.embedding)
    return Seq2Seq(encoder, decoder)
