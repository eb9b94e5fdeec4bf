"""The encoded training set, cached as memory-mapped arrays: encode a corpus once, then map it.

Encoding is the slow part of a start on a large corpus (17 s for 1M pairs), so the filtered,
encoded training pairs are written once, as the flat int32 token arrays and offsets that
`PairDataset` holds, under the prepared-data folder, in a directory named for what decides its
content: the training pairs (their digest), the subword models and data.max_len. Later runs,
and every torchrun rank after rank 0, map the files (`numpy.load(mmap_mode="r")`) and start
without encoding; the pages are shared between processes and read on demand.

A cache is used only if it is whole: its meta.json lists each file's size and sha256, checked
at every load, so a truncated or damaged cache is rebuilt (with a warning), never used. It is
written into a temporary directory and renamed into place, so a crash leaves no half-cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.batching import PairDataset
from seq2seq.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
ARRAYS = ("src_tokens", "src_offsets", "tgt_tokens", "tgt_offsets")


def cache_path(directory: Path, train_pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer,
               max_len: int) -> Path:
    """Where the encoded training set of these pairs, models and max_len lives."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} max_len={max_len}\n".encode())
    models = tokenizer.to_bytes()
    digest.update(hashlib.sha256(models["src"] + b"\0" + models["tgt"]).digest())
    for src, tgt in train_pairs:
        digest.update(src.encode("utf-8") + b"\t" + tgt.encode("utf-8") + b"\n")
    return directory / f"encoded-train-{digest.hexdigest()[:16]}"


def load(path: Path) -> tuple[PairDataset, dict[str, Any]] | None:
    """The cached training set and its meta (drop counts), or None when there is no whole
    cache at `path` (missing, or damaged: then it says so and the caller rebuilds it)."""
    if not path.is_dir():
        return None
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        arrays = {}
        for name in ARRAYS:
            file = path / f"{name}.npy"
            expected = meta["files"][name]
            if file.stat().st_size != expected["bytes"] or _sha256(file) != expected["sha256"]:
                raise ValueError(f"{file.name} differs from what meta.json recorded")
            arrays[name] = np.load(file, mmap_mode="r")
        dataset = PairDataset.from_arrays(**arrays)
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("the encoded training set cached in %s is damaged (%s): encoding it "
                       "again", path, error)
        return None
    return dataset, meta


def save(path: Path, dataset: PairDataset, meta: dict[str, Any]) -> None:
    """Write `dataset` at `path` atomically (a temporary directory renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        files = {}
        for name in ARRAYS:
            file = temporary / f"{name}.npy"
            np.save(file, getattr(dataset, name))
            files[name] = {"bytes": file.stat().st_size, "sha256": _sha256(file)}
        (temporary / "meta.json").write_text(
            json.dumps({**meta, "version": CACHE_VERSION, "files": files}, indent=1),
            encoding="utf-8")
        if path.exists():  # a damaged cache found by `load`
            shutil.rmtree(path)
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
