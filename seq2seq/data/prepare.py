"""From a DataConfig to tokenized, filtered data ready for training and evaluation.

Training pairs are cleaned (empty pairs and pairs over data.max_len subwords are dropped, with a
logged count); validation and test pairs are never filtered, so evaluation sees every line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from seq2seq.config import CorpusKind, DataConfig, SplitFiles, SubwordModel
from seq2seq.data import encoded_cache
from seq2seq.data.batching import PairDataset, TokenBudgetSampler, padding_efficiency
from seq2seq.data.corpus import AlignedFiles, Pairs, TsvFile, fetch_multi30k, multi30k_filename
from seq2seq.data.holdout import Holdout, find_held_out, hold_out
from seq2seq.data.tokenizer import Tokenizer, load_or_train_tokenizer, sample_seed
from seq2seq.data.training_pairs import TrainingPairs
from seq2seq.errors import DataError
from seq2seq.files import atomic_writer, held_lock
from seq2seq.special_ids import FIRST_PIECE_ID

logger = logging.getLogger(__name__)


@dataclass
class EvalSplit:
    """A validation or test split: raw text for scoring, ids for the model."""

    name: str
    src: list[str]
    ref: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: PairDataset
    valid: EvalSplit
    test: EvalSplit
    train_dropped: int  # training pairs dropped by the filters (empty + too long)
    directory: Path  # data.root/<name>.<src>-<tgt>: where this corpus's tokenizer is cached
    # the training text, read from its files again for every epoch's sampled segmentation
    # (data.tokenizer.sampling)
    train_pairs: TrainingPairs
    # the target pieces the output layer scores (seq2seq.nn.output_layer), ascending
    output_ids: np.ndarray
    drop_counts: dict[str, int] = field(default_factory=dict)  # train_dropped by reason
    batch_tokens: int = 6000  # the budget padding_efficiency is measured with
    held_out: dict[str, bytes] = field(default_factory=dict)  # split -> Holdout.keys()

    def record(self) -> dict[str, Any]:
        """What a checkpoint keeps of its data: the training pairs' digest (a resumed run must
        train on the same pairs) and the held-out splits' pairs by content (evaluate's --split
        finds them again in the training file)."""
        return {"train_digest": self.train_pairs.digest, "held_out": dict(self.held_out)}

    def stats(self) -> dict[str, Any]:
        """Corpus statistics: pairs, tokens and lengths per split, vocab sizes (and the target
        pieces the output layer scores), padding."""
        splits = {"train": _split_stats(self.train.src_lengths, self.train.tgt_lengths)}
        for split in (self.valid, self.test):
            splits[split.name] = _split_stats([len(ids) for ids in split.src_ids],
                                              [len(ids) for ids in split.tgt_ids])
        sampler = TokenBudgetSampler(
            self.train.src_lengths, self.train.tgt_lengths, self.batch_tokens, shuffle=False
        )
        return {
            "splits": splits,
            "train_dropped": self.train_dropped,
            "drop_counts": dict(self.drop_counts),
            "joint_vocab": self.tokenizer.joint,
            "src_vocab_size": self.tokenizer.src_vocab_size,
            "tgt_vocab_size": self.tokenizer.tgt_vocab_size,
            "output_pieces": len(self.output_ids),  # those the training targets use
            "batch_tokens": self.batch_tokens,
            "train_batches": len(sampler),
            "padding_efficiency": padding_efficiency(
                sampler, self.train.src_lengths, self.train.tgt_lengths
            ),
        }


def _split_stats(src_lengths: Sequence[int], tgt_lengths: Sequence[int]) -> dict[str, Any]:
    stats: dict[str, Any] = {"pairs": len(src_lengths)}
    for side, side_lengths in (("src", src_lengths), ("tgt", tgt_lengths)):
        lengths = np.asarray(side_lengths if len(side_lengths) else [0])
        stats[f"{side}_tokens"] = int(lengths.sum())
        stats[f"{side}_mean_len"] = float(lengths.mean())
        stats[f"{side}_len_percentiles"] = {  # percent -> length in subwords
            q: int(np.percentile(lengths, q, method="higher")) for q in LENGTH_PERCENTILES}
        stats[f"{side}_max_len"] = int(lengths.max())
    return stats


def prepare_data(cfg: DataConfig, batch_tokens: int = 6000,
                 train_digest: str | None = None) -> PreparedData:
    """Fetch or read the corpus, train or load the tokenizer, encode and filter the pairs.

    Relative paths in ``cfg`` (root, source, custom files) are resolved against the current
    directory. `train_digest` (a resumed run's `record()`) is the digest the training pairs must
    have: other pairs stop here, before a tokenizer is trained for them. Raises DataError with a
    message for the user when anything is wrong.
    """
    root = Path(cfg.root).expanduser().resolve()
    directory = root / f"{cfg.name}.{cfg.src_lang}-{cfg.tgt_lang}"
    train_source, valid_pairs, test_pairs, names, holdout = _read_splits(cfg, root)

    if cfg.max_eval_pairs is not None:
        valid_pairs = valid_pairs[: cfg.max_eval_pairs]
        test_pairs = test_pairs[: cfg.max_eval_pairs]
    for name, pairs in zip(names[1:], (valid_pairs, test_pairs), strict=True):
        if not pairs:
            raise DataError(f"the {name} split is empty: evaluation needs at least one pair")
        if not any(src.strip() and ref.strip() for src, ref in pairs):
            raise DataError(f"the {name} split has no pair with text on both sides: its scores "
                            "would say nothing")

    train_pairs = TrainingPairs(train_source, skip=holdout.removed if holdout else (),
                                limit=cfg.max_train_pairs)
    if not len(train_pairs):
        raise DataError(f"the {names[0]} split has no pair with text on both sides")
    if train_digest is not None:
        _check_digest(train_pairs, train_digest, train_source)
    if holdout is not None:
        _record_holdout(holdout, cfg, directory)
    with held_lock(directory / ".prepare.lock", f"preparing {directory}"):
        tokenizer = load_or_train_tokenizer(cfg, train_pairs, cache_dir=directory)
        train = _encoded_train(cfg, train_pairs, tokenizer, directory)
    empty, too_long = train_pairs.empty, len(train_pairs) - len(train)
    if empty or too_long:
        logger.info(
            "dropped %d of %d training pairs: %d empty, %d over data.max_len=%d subwords",
            empty + too_long, len(train_pairs) + empty, empty, too_long, cfg.max_len,
        )
    if not len(train):
        raise DataError(
            f"no training pairs left after filtering: all {len(train_pairs)} non-empty pairs "
            f"are longer than data.max_len={cfg.max_len} subwords; raise data.max_len"
        )

    return PreparedData(
        tokenizer=tokenizer,
        train=train,
        valid=_encode_split(names[1], valid_pairs, tokenizer),
        test=_encode_split(names[2], test_pairs, tokenizer),
        train_dropped=empty + too_long,
        directory=directory,
        drop_counts={"empty": empty, "too_long": too_long},
        batch_tokens=batch_tokens,
        train_pairs=train_pairs,
        held_out=holdout.keys() if holdout is not None else {},
        output_ids=output_ids(train, tokenizer.tgt_vocab_size, cfg.tokenizer.sampling.enabled),
    )


def output_ids(train: PairDataset, vocab_size: int, sampling: bool) -> np.ndarray:
    """The target pieces the model must be able to produce, ascending: the special ids and every
    piece of the training targets; every piece under subword sampling, whose segmentations may
    use any piece of the target text's substrings."""
    if sampling:
        return np.arange(vocab_size)
    used = np.bincount(np.asarray(train.tgt_tokens), minlength=vocab_size) > 0  # (V,)
    used[:FIRST_PIECE_ID] = True  # the special ids
    return np.flatnonzero(used)


def _check_digest(train_pairs: TrainingPairs, expected: str, files: AlignedFiles | TsvFile
                  ) -> None:
    """A resumed run trains on the pairs it was trained on, never under a new tokenizer."""
    if train_pairs.digest != expected:
        raise DataError(
            f"the training pairs ({_describe(files)}) are not the ones the checkpoint was trained "
            f"on: their digest is {train_pairs.digest[:16]} here but {expected[:16]} in the "
            "checkpoint (the file changed); resume with the data it was trained on, or start a "
            "new run")


def _encoded_train(cfg: DataConfig, train_pairs: TrainingPairs, tokenizer: Tokenizer,
                   directory: Path) -> PairDataset:
    """The training pairs encoded and filtered by data.max_len, mapped from the cache; encoded
    and cached first unless a whole cache exists."""
    path = encoded_cache.cache_path(directory, train_pairs.digest, tokenizer, cfg.max_len)
    train = encoded_cache.load(path)
    if train is not None:
        logger.info("mapped the %d encoded training pairs cached in %s", len(train), path)
        return train

    started = time.perf_counter()
    encoded_cache.save(path, _encode_chunks(train_pairs, tokenizer, cfg.max_len))
    train = encoded_cache.load(path)
    if train is None:
        raise DataError(f"the encoded training set just written to {path} cannot be read back")
    logger.info("encoded %d training pairs in %.1fs; cached in %s", len(train_pairs),
                time.perf_counter() - started, path)
    return train


def _encode_chunks(train_pairs: TrainingPairs, tokenizer: Tokenizer, max_len: int
                   ) -> Iterator[tuple[list[list[int]], list[list[int]]]]:
    """The ids of the pairs within max_len subwords on both sides, ENCODE_CHUNK_PAIRS pairs at
    a time: only one chunk's text and ids exist as Python objects."""
    chunks = -(-len(train_pairs) // ENCODE_CHUNK_PAIRS)
    for chunk in tqdm(train_pairs.chunks(ENCODE_CHUNK_PAIRS), desc="encoding", unit="chunk",
                      total=chunks, disable=chunks < 4, leave=False):
        yield _within(tokenizer.encode_src([s for s, _ in chunk]),
                      tokenizer.encode_tgt([t for _, t in chunk]), max_len)


def _within(src_ids: list[list[int]], tgt_ids: list[list[int]], max_len: int
            ) -> tuple[list[list[int]], list[list[int]]]:
    """The pairs of ids with at most max_len subwords on both sides."""
    keep = kept_within(src_ids, tgt_ids, max_len)
    return [src_ids[i] for i in keep], [tgt_ids[i] for i in keep]


def kept_within(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                max_len: int) -> list[int]:
    """The positions of the pairs that training keeps: at most max_len subwords on both
    sides."""
    return [i for i in range(len(src_ids))
            if len(src_ids[i]) <= max_len and len(tgt_ids[i]) <= max_len]


def sampled_train(data: PreparedData, cfg: DataConfig, seed: int, epoch: int) -> PairDataset:
    """The training pairs segmented by sampling for `epoch` (subword regularization): the same
    (seed, epoch) always gives the same ids, so a resumed run sees the batches it would have.
    Pairs that come out longer than data.max_len subwords sit this epoch out."""
    sampling = cfg.tokenizer.sampling
    bpe = cfg.tokenizer.model_type is SubwordModel.bpe
    alpha, nbest = (sampling.dropout, -1) if bpe else (sampling.alpha, sampling.nbest)
    tokenizer = data.tokenizer

    def chunks() -> Iterator[tuple[list[list[int]], list[list[int]]]]:
        for number, chunk in enumerate(data.train_pairs.chunks(ENCODE_CHUNK_PAIRS)):
            sample_seed(int(np.random.SeedSequence([seed, epoch, number]).generate_state(1)[0]))
            yield _within(tokenizer.sample_src([s for s, _ in chunk], alpha, nbest),
                          tokenizer.sample_tgt([t for _, t in chunk], alpha, nbest), cfg.max_len)

    return PairDataset.from_chunks(chunks())


def _encode_split(name: str, pairs: Pairs, tokenizer: Tokenizer) -> EvalSplit:
    src = [s for s, _ in pairs]
    ref = [t for _, t in pairs]
    return EvalSplit(name, src, ref, tokenizer.encode_src(src), tokenizer.encode_tgt(ref))


CUSTOM_SPLITS = ("train", "valid", "test")
ENCODE_CHUNK_PAIRS = 100_000  # training pairs encoded at a time
LENGTH_PERCENTILES = (50, 95, 99)  # subword lengths that the statistics show


def read_split(cfg: DataConfig, split: str, held_out: dict[str, bytes] | None = None) -> Pairs:
    """The raw sentence pairs of one split, without training or loading a tokenizer.

    For evaluating a saved model, whose tokenizer comes from its checkpoint. Multi30k: any
    published split name (fetched and verified as prepare_data does); custom corpora: train,
    valid (or val) or test, from data.{split}_files. Nothing is filtered or sliced. A split that
    was held out of the training file is found there by content when `held_out` (the
    checkpoint's `PreparedData.record()["held_out"]`) has it, so that an edited file still gives
    the pairs the model never saw; without a record (None) it is drawn again, with a warning.
    """
    root = Path(cfg.root).expanduser().resolve()
    if cfg.corpus is CorpusKind.multi30k:
        return list(_multi30k_files(cfg, root, (split,))[0])
    name = "valid" if split == "val" else split
    if name not in CUSTOM_SPLITS:
        raise DataError(f"a custom corpus has no split {split!r}; choose from "
                        f"{', '.join(CUSTOM_SPLITS)}")
    files = getattr(cfg, f"{name}_files")
    if name != "train" and not _unset(files):
        return list(_custom_files(f"data.{name}_files", files))
    if name != "train" and held_out is not None and name in held_out:
        train = _custom_files("data.train_files", cfg.train_files)
        return find_held_out(train, held_out[name], name, _describe(train))
    train, valid, test, holdout = _read_custom_splits(cfg)
    if holdout is not None and held_out is None and name in holdout.splits:
        logger.warning("no record of the pairs held out as the %s split: drawn again from %s "
                       "(data.holdout.seed=%d), the same pairs only if the file is unchanged "
                       "since training", name, _describe(train), cfg.holdout.seed)
    if name == "train":
        removed = holdout.removed if holdout else frozenset()
        return [pair for index, pair in enumerate(train) if index not in removed]
    return valid if name == "valid" else test


def _multi30k_files(cfg: DataConfig, root: Path, names: tuple[str, ...]) -> list[AlignedFiles]:
    for split in names:  # fail on a split that does not exist before fetching anything
        multi30k_filename(split, cfg.src_lang)
        multi30k_filename(split, cfg.tgt_lang)
    source = Path(cfg.source).expanduser().resolve() if cfg.source else None
    if source is not None and not source.is_dir():
        raise DataError(
            f"data.source={cfg.source!r} is not a directory: point it at a directory "
            "holding the Multi30k {split}.{lang}.gz files, or leave it unset to download them"
        )
    raw_dir = root / "multi30k" / "raw"
    return [AlignedFiles(fetch_multi30k(split, cfg.src_lang, raw_dir, source),
                         fetch_multi30k(split, cfg.tgt_lang, raw_dir, source))
            for split in names]


def _read_splits(cfg: DataConfig, root: Path) -> tuple[
        AlignedFiles | TsvFile, Pairs, Pairs, tuple[str, ...], Holdout | None]:
    """The configured corpus: its training files (read as a stream), the valid and test pairs,
    the three split names, and what was held out of the training file (custom corpora without
    valid or test files)."""
    if cfg.corpus is CorpusKind.multi30k:
        names = (cfg.train_split, cfg.valid_split, cfg.test_split)
        train, valid, test = _multi30k_files(cfg, root, names)
        return train, list(valid), list(test), names, None
    train, valid, test, holdout = _read_custom_splits(cfg)
    return train, valid, test, CUSTOM_SPLITS, holdout


def _read_custom_splits(cfg: DataConfig
                        ) -> tuple[AlignedFiles | TsvFile, Pairs, Pairs, Holdout | None]:
    """A custom corpus's training files and valid and test pairs; a valid or test split
    without files is held out of the training files (whose pairs training must then skip:
    `Holdout.removed`)."""
    train = _custom_files("data.train_files", cfg.train_files)
    missing = {name: getattr(cfg.holdout, name) for name in CUSTOM_SPLITS[1:]
               if _unset(getattr(cfg, f"{name}_files"))}
    holdout = hold_out(train, missing, cfg.holdout.seed) if missing else None
    valid, test = (holdout.splits[name] if holdout and name in missing
                   else list(_custom_files(f"data.{name}_files", getattr(cfg, f"{name}_files")))
                   for name in CUSTOM_SPLITS[1:])
    return train, valid, test, holdout


def _describe(files: AlignedFiles | TsvFile) -> str:
    """The file(s) of a split, for messages."""
    paths = [files.path] if isinstance(files, TsvFile) else [files.src, files.tgt]
    return " and ".join(str(path) for path in paths)


def _unset(files: SplitFiles) -> bool:
    return files.src is None and files.tgt is None and files.tsv is None


def _record_holdout(holdout: Holdout, cfg: DataConfig, directory: Path) -> None:
    """Write which lines of the training file went where, and say so in the log."""
    record = directory / "holdout.json"
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_writer(record) as out:
        out.write(json.dumps({"train_files": asdict(cfg.train_files), "seed": cfg.holdout.seed,
                              **holdout.record()}, indent=1).encode("utf-8"))
    sizes = ", ".join(f"{len(pairs):,} {name}" for name, pairs in holdout.splits.items())
    logger.info("held out %s pairs of data.train_files (data.holdout.seed=%d); dropped %d "
                "training pairs whose source was held out; the lines are listed in %s",
                sizes, cfg.holdout.seed, len(holdout.dropped), record)


def _custom_files(key: str, files: SplitFiles) -> AlignedFiles | TsvFile:
    """One split of a custom corpus: a TSV file, or two aligned files."""
    if files.tsv is not None and (files.src is not None or files.tgt is not None):
        raise DataError(f"set either {key}.tsv or {key}.src and {key}.tgt, not both")
    if files.tsv is not None:
        return TsvFile(_existing(f"{key}.tsv", files.tsv))
    if files.src is None or files.tgt is None:
        raise DataError(
            f"{key} needs a TSV file ({key}.tsv=PATH) or two aligned files "
            f"({key}.src=PATH {key}.tgt=PATH); see conf/data/custom.yaml"
        )
    return AlignedFiles(_existing(f"{key}.src", files.src), _existing(f"{key}.tgt", files.tgt))


def _existing(key: str, value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"{key}={value!r}: file not found ({path})")
    return path
