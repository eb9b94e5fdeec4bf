"""The encoded training set, cached as memory-mapped arrays: encode a corpus once, then map it.

Encoding is the slow part of a start on a large corpus (17 s for 1M pairs), so the filtered,
encoded training pairs are written once, as the flat int32 token arrays and int64 offsets that
`PairDataset` holds (raw little-endian files, as fairseq's .bin/.idx), under the prepared-data
folder, in a directory named for what decides its content: the training pairs (their digest),
the subword models and data.max_len. They are written chunk by chunk as they are encoded, so
only one chunk's ids are ever in memory. Later runs, and every torchrun rank after rank 0, map
the files (`numpy.memmap`) and start without encoding; the pages are shared between processes
and read on demand.

A cache is used only if it is whole: its meta.json lists each file's size and sha256, checked
at every load, so a truncated or damaged cache is rebuilt (with a warning), never used. It is
written into a temporary directory and renamed into place, so a crash leaves no half-cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from seq2seq.data.batching import PairDataset, joined_offsets
from seq2seq.data.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

CACHE_VERSION = 2
TOKENS = np.dtype("<i4")
OFFSETS = np.dtype("<i8")
ARRAYS = {"src_tokens": TOKENS, "src_offsets": OFFSETS, "tgt_tokens": TOKENS,
          "tgt_offsets": OFFSETS}
EncodedChunk = tuple[Sequence[Sequence[int]], Sequence[Sequence[int]]]  # (src ids, tgt ids)


def cache_path(directory: Path, train_digest: str, tokenizer: Tokenizer, max_len: int) -> Path:
    """Where the encoded training set of these pairs (their digest), models and max_len lives."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} max_len={max_len} {train_digest}\n".encode())
    models = tokenizer.to_bytes()
    for side in ("src", "tgt"):  # one fixed-size hash each: model bytes hold any byte, NUL too
        digest.update(hashlib.sha256(models[side]).digest())
    return directory / f"encoded-train-{digest.hexdigest()[:16]}"


def load(path: Path) -> PairDataset | None:
    """The cached training set, or None when there is no whole cache at `path` (missing, or
    damaged: then it says so and the caller rebuilds it)."""
    if not path.is_dir():
        return None
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        arrays = {}
        for name, dtype in ARRAYS.items():
            file = path / f"{name}.bin"
            expected = meta["files"][name]
            if file.stat().st_size != expected["bytes"] or _sha256(file) != expected["sha256"]:
                raise ValueError(f"{file.name} differs from what meta.json recorded")
            arrays[name] = (np.memmap(file, dtype=dtype, mode="r") if expected["bytes"]
                            else np.zeros(0, dtype=dtype))  # an empty file cannot be mapped
        dataset = PairDataset.from_arrays(**arrays)
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("the encoded training set cached in %s is damaged (%s): encoding it "
                       "again", path, error)
        return None
    return dataset


def save(path: Path, chunks: Iterable[EncodedChunk]) -> None:
    """Write the encoded pairs of `chunks` at `path`, one chunk at a time, atomically (into a
    temporary directory renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # made with mkdir, as every folder, so that the umask decides its permissions (mkdtemp's
    # are 0700, whatever the umask)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    temporary.mkdir()
    try:
        records = {}
        lengths: dict[str, list[np.ndarray]] = {"src": [], "tgt": []}
        with (_HashingFile(temporary / "src_tokens.bin") as src_out,
              _HashingFile(temporary / "tgt_tokens.bin") as tgt_out):
            outputs = {"src": src_out, "tgt": tgt_out}
            for src_ids, tgt_ids in chunks:
                part = PairDataset(src_ids, tgt_ids)
                for side in ("src", "tgt"):
                    outputs[side].write(getattr(part, f"{side}_tokens").astype(TOKENS, copy=False))
                    lengths[side].append(getattr(part, f"{side}_lengths"))
        for side, parts in lengths.items():
            offsets = joined_offsets(parts).astype(OFFSETS, copy=False)
            with _HashingFile(temporary / f"{side}_offsets.bin") as offsets_out:
                offsets_out.write(offsets)
            records[f"{side}_tokens"] = outputs[side].record()
            records[f"{side}_offsets"] = offsets_out.record()
        meta = {"version": CACHE_VERSION, "pairs": len(offsets) - 1, "files": records}
        (temporary / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if path.exists():  # a damaged cache found by `load`
            shutil.rmtree(path)
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


class _HashingFile:
    """A file written in pieces and hashed as it is written (not read back for its sha256)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._digest = hashlib.sha256()
        self._bytes = 0

    def __enter__(self) -> _HashingFile:
        self._stream = open(self._path, "wb")  # noqa: SIM115 (closed by __exit__)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()

    def write(self, array: np.ndarray) -> None:
        data = array.tobytes()
        self._stream.write(data)
        self._digest.update(data)
        self._bytes += len(data)

    def record(self) -> dict[str, int | str]:
        return {"bytes": self._bytes, "sha256": self._digest.hexdigest()}


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
