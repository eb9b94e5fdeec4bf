"""sentencepiece subword models for the source and target side (joint or separate).

Models are trained on the training split (Kudo & Richardson 2018, "SentencePiece"; unigram:
Kudo 2018, BPE: Sennrich et al. 2016) and cached under data.root, keyed by their settings and a
digest of the training sentences, so that a second run with the same data reuses them. A cached
model is reused only if it is whole: the sha256 of each one, written beside it, is checked at
every load (a changed byte in a piece still parses), so a damaged cache is trained again (with a
warning), never used. Every model has the same special ids, so batches, losses and search need
not ask the tokenizer.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import sentencepiece as spm

from seq2seq.config import DataConfig
from seq2seq.data.training_pairs import TrainingPairs
from seq2seq.errors import DataError
from seq2seq.files import atomic_write_bytes, atomic_write_text
from seq2seq.special_ids import BOS_ID, EOS_ID, PAD_ID, UNK_ID

logger = logging.getLogger(__name__)

_SPECIAL_IDS = frozenset((PAD_ID, BOS_ID, EOS_ID))
CHECKSUMS = "sha256.json"  # beside the cached models: {file name: sha256}, written after them


class Tokenizer:
    """Encode and decode batches of sentences with one (joint) or two sentencepiece models.

    Encoding adds no BOS/EOS: the batching code adds them where each side needs them.
    """

    def __init__(self, src_model: bytes, tgt_model: bytes) -> None:
        self._models = {"src": src_model, "tgt": tgt_model}
        self.joint = src_model == tgt_model
        self._src = _load(src_model, "src")
        self._tgt = self._src if self.joint else _load(tgt_model, "tgt")
        self.src_vocab_size = self._src.get_piece_size()
        self.tgt_vocab_size = self._tgt.get_piece_size()

    def encode_src(self, lines: Sequence[str]) -> list[list[int]]:
        return self._src.encode(list(lines), out_type=int)

    def encode_tgt(self, lines: Sequence[str]) -> list[list[int]]:
        return self._tgt.encode(list(lines), out_type=int)

    def sample_src(self, lines: Sequence[str], alpha: float, nbest: int) -> list[list[int]]:
        """A sampled segmentation of each line (subword regularization; see `sample_seed`)."""
        return _sample(self._src, lines, alpha, nbest)

    def sample_tgt(self, lines: Sequence[str], alpha: float, nbest: int) -> list[list[int]]:
        return _sample(self._tgt, lines, alpha, nbest)

    def decode_src(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self._src.decode([_strip_special(s) for s in ids])

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self._tgt.decode([_strip_special(s) for s in ids])

    def src_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self._src.id_to_piece(int(i)) for i in ids]

    def tgt_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self._tgt.id_to_piece(int(i)) for i in ids]

    def to_bytes(self) -> dict[str, bytes]:
        """The serialized models, for checkpoints: ``{"src": bytes, "tgt": bytes}``."""
        return dict(self._models)

    @classmethod
    def from_bytes(cls, models: dict[str, bytes]) -> Tokenizer:
        return cls(models["src"], models["tgt"])


def sample_seed(seed: int) -> None:
    """Seed sentencepiece's sampling: the samples that follow (on one thread, as `_sample`
    draws them) are then the same in every process."""
    spm.set_random_generator_seed(seed)


def _sample(processor: spm.SentencePieceProcessor, lines: Sequence[str], alpha: float,
            nbest: int) -> list[list[int]]:
    # One thread: with several, which sentence draws which random numbers varies.
    return processor.encode(list(lines), out_type=int, enable_sampling=True, alpha=alpha,
                            nbest_size=nbest, num_threads=1)


def _load(model: bytes, side: str) -> spm.SentencePieceProcessor:
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model)
    except RuntimeError as error:
        raise DataError(f"the {side} sentencepiece model is corrupt: {error}") from None
    specials = [processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()]
    if specials != [PAD_ID, UNK_ID, BOS_ID, EOS_ID]:
        raise DataError(
            f"the {side} sentencepiece model has special ids pad/unk/bos/eos={specials}, "
            f"expected {[PAD_ID, UNK_ID, BOS_ID, EOS_ID]}: it was not trained by this project"
        )
    return processor


def _strip_special(ids: Sequence[int]) -> list[int]:
    return [int(i) for i in ids if int(i) not in _SPECIAL_IDS]


def load_or_train_tokenizer(cfg: DataConfig, train: TrainingPairs, cache_dir: Path) -> Tokenizer:
    """The tokenizer for the `train` pairs: from the cache under ``cache_dir`` or freshly trained.

    The cache key holds the settings and the digest of the training pairs, so a change of
    corpus, slice (data.max_train_pairs) or settings trains new models instead of reusing stale
    ones.
    """
    model_dir = Path(cache_dir) / _cache_key(cfg, train)
    tok = cfg.tokenizer
    if tok.joint:
        paths = {"src": model_dir / "joint.model", "tgt": model_dir / "joint.model"}
    else:
        paths = {"src": model_dir / "src.model", "tgt": model_dir / "tgt.model"}
    if all(path.is_file() for path in paths.values()):
        tokenizer = _cached(paths)
        if tokenizer is not None:
            logger.info("reusing sentencepiece models in %s", model_dir)
            return tokenizer

    start = time.perf_counter()
    if tok.joint:
        models = dict.fromkeys(("src", "tgt"), _train(cfg, train, "joint"))
    else:
        models = {side: _train(cfg, train, side) for side in ("src", "tgt")}
    for side, path in paths.items():
        atomic_write_bytes(path, models[side])
    # last: a crash before it leaves models without checksums, which are then trained again
    atomic_write_text(model_dir / CHECKSUMS, json.dumps(_checksums(paths, models), indent=1))
    logger.info(
        "trained sentencepiece models (%s) in %.1fs into %s",
        "joint" if tok.joint else "separate", time.perf_counter() - start, model_dir,
    )
    return Tokenizer(models["src"], models["tgt"])


def _cached(paths: dict[str, Path]) -> Tokenizer | None:
    """The tokenizer of the cached models at `paths`, or None when they are damaged (they
    differ from their recorded sha256, or do not load): then it says so, and the caller trains
    them again."""
    model_dir = paths["src"].parent
    try:
        models = {side: path.read_bytes() for side, path in paths.items()}
        recorded = json.loads((model_dir / CHECKSUMS).read_text(encoding="utf-8"))
        actual = _checksums(paths, models)
        changed = [name for name, sha256 in actual.items()
                   if not isinstance(recorded, dict) or recorded.get(name) != sha256]
        if changed:
            raise DataError(f"{' and '.join(changed)}: not the sha256 recorded in {CHECKSUMS}")
        return Tokenizer(models["src"], models["tgt"])
    except (OSError, ValueError, DataError) as error:
        logger.warning("the cached sentencepiece models in %s are damaged (%s): training them "
                       "again", model_dir, error)
        return None


def _checksums(paths: dict[str, Path], models: dict[str, bytes]) -> dict[str, str]:
    """{file name: sha256} of the models (one file for a joint model)."""
    return {path.name: hashlib.sha256(models[side]).hexdigest() for side, path in paths.items()}


def _cache_key(cfg: DataConfig, train: TrainingPairs) -> str:
    tok = cfg.tokenizer
    sampled = f"-sample{tok.max_sentences}" if _sentences_per_model(cfg, train) \
        > tok.max_sentences else ""
    return (
        f"spm-{'joint' if tok.joint else 'separate'}-{tok.model_type.value}-{tok.vocab_size}"
        f"-cc{tok.character_coverage!r}{sampled}-{train.digest[:12]}"  # !r: every digit
    )


def _sentences_per_model(cfg: DataConfig, train: TrainingPairs) -> int:
    return 2 * len(train) if cfg.tokenizer.joint else len(train)


def _train(cfg: DataConfig, train: TrainingPairs, side: Literal["src", "tgt", "joint"]) -> bytes:
    """Train one sentencepiece model in memory on the sentences of `side` (at most
    `data.tokenizer.max_sentences` of them) and return its serialized bytes.

    The sample is drawn by `TrainingPairs.sentences` with a fixed seed rather than by
    sentencepiece's own input_sentence_size sampling, which gave another model in each process:
    sentencepiece's training on a given list is deterministic, so the same data always gives the
    same model.
    """
    tok = cfg.tokenizer
    model = io.BytesIO()
    available = _sentences_per_model(cfg, train)
    if available > tok.max_sentences:
        logger.info("training sentencepiece on a sample of %d of %d sentences "
                    "(data.tokenizer.max_sentences)", tok.max_sentences, available)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=train.sentences(side, tok.max_sentences),
            model_writer=model,
            model_type=tok.model_type.value,
            vocab_size=tok.vocab_size,
            character_coverage=tok.character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            minloglevel=2,  # sentencepiece logs every step to stderr otherwise
        )
    except RuntimeError as error:
        limit = re.search(r"value <= (\d+)", str(error))
        if limit:
            raise DataError(
                f"data.tokenizer.vocab_size={tok.vocab_size} is too large for this training "
                f"data ({min(available, tok.max_sentences)} sentences): sentencepiece can build "
                f"at most {limit.group(1)} pieces; set data.tokenizer.vocab_size="
                f"{limit.group(1)} or less"
            ) from None
        raise DataError(f"sentencepiece training failed: {error}") from None
    return model.getvalue()
