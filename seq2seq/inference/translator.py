"""A saved model, ready to translate: `Translator.from_checkpoint(path).translate(lines)`.

A checkpoint is self-contained (weights, the resolved config, the sentencepiece models as bytes),
so translating needs no other file. Every front end (the translate and evaluate commands, Python
callers) relies on one promise kept here: N input lines give N results, in input order. An empty
line gives an empty translation without running the model; a line longer than the model's
`data.max_len` subwords is translated from its truncated source, with a warning; nothing is
dropped.

Lines are sorted by length and decoded in batches of `batch_size` sentences, so a batch wastes
little on padding; the same lines and batch size always give the same batches, hence the same
output, whichever command runs them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import load_checkpoint, resolve_checkpoint
from seq2seq.config import DEFAULT_BATCH_SIZE, LENGTH_PENALTY, MAX_LEN_RATIO, Config, to_object
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import CheckpointError, ConfigError, DataError, DeviceError
from seq2seq.inference.alignment import Link, hard_links, word_attention
from seq2seq.inference.decoding import SearchSettings, search_settings, translate_ids
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.quantize import quantize
from seq2seq.inference.search import Hypothesis, check_beam
from seq2seq.nn.model import Seq2Seq, build_model, saved_output_ids
from seq2seq.runtime import select_device

log = logging.getLogger(__name__)

# `iter_search` sorts this many batches' worth of lines at a time: long inputs stream out in
# chunks (and keep their attention weights in memory only that long) at little cost in padding.
CHUNK_BATCHES = 64
EOS_PIECE = "</s>"


@dataclass
class Translation:
    """The translations of one input line, best first, with what is needed to show attention."""

    source: str
    src_pieces: list[str]  # the source subwords the model read (after truncation), without EOS
    hypotheses: list[Hypothesis]  # best first; empty for an empty line
    texts: list[str]  # the detokenized hypotheses
    tgt_pieces: list[list[str]]  # the target subwords of each hypothesis, without EOS

    @property
    def text(self) -> str:
        """The best translation ("" for an empty line)."""
        return self.texts[0] if self.texts else ""

    def attention_labels(self, rank: int = 0) -> tuple[list[str], list[str]]:
        """Source and target labels of hypothesis `rank`'s attention rows and columns (with EOS)."""
        return self.src_pieces + [EOS_PIECE], self.tgt_pieces[rank] + [EOS_PIECE]

    def strongest_sources(self, rank: int = 0) -> list[tuple[str, str, float]]:
        """For each target subword (and the final EOS): the source subword it attends to most.

        Returns (target piece, source piece, weight) triples; with several heads the weights are
        averaged over heads first.
        """
        weights = self.weights(rank).float().mean(dim=0)  # (T + 1, S)
        strongest, where = weights.max(dim=1)  # (T + 1,), (T + 1,)
        src, tgt = self.attention_labels(rank)
        return [(tgt[t], src[int(where[t])], float(strongest[t])) for t in range(len(tgt))]

    def word_attention(self, rank: int = 0) -> torch.Tensor:
        """Hypothesis `rank`'s attention between words (target words, source words); see
        seq2seq.inference.alignment. Empty (0, 0) for an empty line."""
        if not self.hypotheses:
            return torch.zeros(0, 0)
        return word_attention(self.weights(rank), self.src_pieces, self.tgt_pieces[rank])

    def alignment(self, rank: int = 0) -> list[Link]:
        """Hypothesis `rank`'s hard links (source word, target word), sorted; [] for an empty
        line."""
        return hard_links(self.word_attention(rank))

    def weights(self, rank: int = 0) -> torch.Tensor:
        """Hypothesis `rank`'s attention (heads, T + 1, S); it was kept only if asked for."""
        weights = self.hypotheses[rank].attention
        if weights is None:
            raise ValueError("no attention weights: translate with settings(attention=True)")
        return weights


class Translator:
    """A model (or an ensemble of models) in eval mode on its device, with the tokenizer and
    config it was trained with."""

    def __init__(self, model: Seq2Seq | Ensemble, tokenizer: Tokenizer, config: Config,
                 device: torch.device, checkpoints: Sequence[Path] = (),
                 quantization: str | None = None,
                 training_data: dict[str, Any] | None = None) -> None:
        """`quantization="int8"` (CPU only) replaces the model's Linear and GRU layers by int8
        ones; `parameters` still counts the trained model's. `training_data` is the checkpoint's
        record of its data (`PreparedData.record()`; None from an older seq2seq)."""
        self.parameters = sum(p.numel() for p in model.parameters())
        if quantization is not None:
            if device.type != "cpu":
                raise DeviceError(f"int8 quantization runs on the CPU only, not on {device}")
            model = quantize(model, quantization)
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.config = config  # an ensemble's: its first member's (search settings, max_len)
        self.device = device
        self.checkpoints = list(checkpoints)  # several for an ensemble
        self.quantization = quantization  # None (the trained weights) or "int8"
        self.training_data = training_data  # an ensemble's: its first member's

    @classmethod
    def from_checkpoint(cls, path: str | Path | Sequence[str | Path], device: str = "auto",
                        name: str | None = None, quantize: str | None = None) -> Translator:
        """Load a checkpoint file, or `checkpoints/<name>` of a run dir (by default the
        run's final model: averaged.pt where checkpoint averaging won on val, else best.pt;
        without it, its last.pt, with a warning), onto `device`; `quantize="int8"` makes its
        Linear and GRU layers int8 (CPU only: device "auto" then means the CPU). Several paths
        make an ensemble of their models, which must share their subword models.

        Raises CheckpointError (missing, not a checkpoint, refused pickle, other format version,
        weights that do not fit the config, an ensemble of different vocabularies) and
        DeviceError, each with a message for the user.
        """
        if quantize is not None and device not in ("auto", "cpu"):
            raise DeviceError(f"--quantize {quantize} runs on the CPU only, not on {device}: "
                              "use --device cpu (or auto)")
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if not paths:
            raise CheckpointError("no checkpoint given")
        loaded = [_load_model(one, name) for one in paths]
        first = loaded[0]
        for other in loaded[1:]:
            if other.tokenizer.to_bytes() != first.tokenizer.to_bytes():
                raise CheckpointError(
                    f"{other.path} and {first.path} have different subword models: the models "
                    "of an ensemble must share one vocabulary (train them on the same data with "
                    "the same data.tokenizer settings)")
        model = first.model if len(loaded) == 1 else Ensemble([one.model for one in loaded])
        device = select_device("cpu" if quantize is not None else device)
        return cls(model, first.tokenizer, first.config, device, [one.path for one in loaded],
                   quantize, first.training_data)

    def settings(self, beam_size: int = 5, length_penalty: float | None = None,
                 max_len_ratio: float | None = None, nbest: int = 1,
                 attention: bool = False) -> SearchSettings:
        """Search settings; those left unset are the ones the model was trained and tested with.

        Sources longer than the model's data.max_len are truncated to it: the model never saw
        longer ones in training. `attention` keeps the attention weights of every hypothesis
        (for plots; decoding is faster without).
        """
        check_beam(beam_size, nbest)
        for name, value, allowed in (("length_penalty", length_penalty, LENGTH_PENALTY),
                                     ("max_len_ratio", max_len_ratio, MAX_LEN_RATIO)):
            if value is not None and (refusal := allowed.refusal(value)):
                raise ValueError(f"{name} {refusal}")
        return search_settings(self.config, beam_size, length_penalty, max_len_ratio, nbest,
                               attention)

    def translate(self, lines: Sequence[str], settings: SearchSettings | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> list[str]:
        """The best translation of each line, in order ("" for an empty line)."""
        return [found.text for found in self.iter_search(lines, settings, batch_size)]

    def iter_search(self, lines: Sequence[str], settings: SearchSettings | None = None,
                    batch_size: int = DEFAULT_BATCH_SIZE,
                    first_line: int = 1) -> Iterator[Translation]:
        """`search` over chunks of `batch_size * CHUNK_BATCHES` lines, yielded in input order."""
        chunk = batch_size * CHUNK_BATCHES
        for start in range(0, len(lines), chunk):
            yield from self.search(lines[start:start + chunk], settings, batch_size,
                                   first_line + start)

    def search(self, lines: Sequence[str], settings: SearchSettings | None = None,
               batch_size: int = DEFAULT_BATCH_SIZE, first_line: int = 1) -> list[Translation]:
        """Translate `lines` (sorted by length into batches); one Translation per line, in order.

        `first_line` is the number of `lines[0]` in the caller's input, for warnings.
        """
        return self.search_encoded(lines, self.tokenizer.encode_src(list(lines)), settings,
                                   batch_size, first_line)

    def search_encoded(self, lines: Sequence[str], src_ids: list[list[int]],
                       settings: SearchSettings | None = None,
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       first_line: int = 1) -> list[Translation]:
        """`search` for lines whose source ids (`tokenizer.encode_src(lines)`) the caller has
        already: the server encodes each request once, to size its batches."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        settings = settings or self.settings()
        src_ids = self._truncated(src_ids, settings.max_src_len, first_line)
        found: list[list[Hypothesis]] = [[] for _ in lines]
        todo = sorted((i for i, ids in enumerate(src_ids) if ids), key=lambda i: len(src_ids[i]))
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            results = translate_ids(self.model, [src_ids[i] for i in batch], settings, self.device)
            for index, hypotheses in zip(batch, results, strict=True):
                found[index] = hypotheses

        flat = [hyp.tokens for hypotheses in found for hyp in hypotheses]
        texts = iter(self.tokenizer.decode_tgt(flat) if flat else [])
        return [
            Translation(
                source=line,
                src_pieces=self.tokenizer.src_pieces(ids),
                hypotheses=hypotheses,
                texts=[next(texts) for _ in hypotheses],
                tgt_pieces=[self.tokenizer.tgt_pieces(hyp.tokens) for hyp in hypotheses],
            )
            for line, ids, hypotheses in zip(lines, src_ids, found, strict=True)
        ]

    def _truncated(self, src_ids: list[list[int]], max_len: int | None,
                   first_line: int) -> list[list[int]]:
        if max_len is None:
            return src_ids
        for offset, ids in enumerate(src_ids):
            if len(ids) > max_len:
                log.warning("line %d has %d subwords, more than the %d the model was trained "
                            "with (data.max_len): translated from its first %d",
                            first_line + offset, len(ids), max_len, max_len)
        return [ids[:max_len] for ids in src_ids]


@dataclass
class _Loaded:
    path: Path
    model: Seq2Seq
    tokenizer: Tokenizer
    config: Config
    training_data: dict[str, Any] | None


def _load_model(path: str | Path, name: str | None) -> _Loaded:
    """One checkpoint's model with its weights, tokenizer and config (see from_checkpoint)."""
    path = resolve_checkpoint(path, name, fallback="last.pt")
    payload = load_checkpoint(path)
    try:
        config = to_object(payload["config"])
        tokenizer = Tokenizer.from_bytes(payload["tokenizer"])
        model = build_model(config.model, config.attention, tokenizer.src_vocab_size,
                            tokenizer.tgt_vocab_size, saved_output_ids(payload["model"]))
    except (ConfigError, DataError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds a config or tokenizer this seq2seq cannot use: "
                              f"{error}") from None
    _check_fit(payload["model"], model.state_dict(), path)
    model.load_state_dict(payload["model"])
    return _Loaded(path, model, tokenizer, config, payload.get("training_data"))


def _check_fit(weights: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
               path: Path) -> None:
    """Refuse weights whose names or shapes differ from those of the model the checkpoint's
    config builds (`expected`), naming the first tensor that differs: load_state_dict's own
    message takes a line per tensor, and its first line names none."""
    differences = [
        f"{name} is {tuple(weights[name].shape)} in the file but {tuple(tensor.shape)} in the "
        "model" if name in weights else f"{name} is missing from the file"
        for name, tensor in expected.items()
        if name not in weights or weights[name].shape != tensor.shape
    ] + [f"the file holds {name}, which the model has not" for name in weights
         if name not in expected]
    if differences:
        others = len(differences) - 1
        more = f" (and {others} other difference{'s' * (others > 1)})" if others else ""
        raise CheckpointError(f"{path}: the weights do not fit the model its config describes: "
                              f"{differences[0]}{more}")
