"""Sequence-level knowledge distillation (Kim & Rush 2016): a teacher's beam-search translations of
the training sources, which a student then learns instead of (or beside) the references.

Translating a training split takes a while on a CPU (29k sentences, tens of minutes with an
ensemble), so the work is journalled: each batch's translations are appended to a journal file
(flushed and synced) as soon as they exist. A run stopped by Ctrl-C, SIGTERM, a crash or a power
cut starts again where it stopped: the batches (the sources sorted by length, always the same for
the same sources and batch size) whose lines the journal holds are not decoded again. The journal
starts with a fingerprint of the teachers, the search settings and the sources; a journal of other
work is refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from seq2seq.data.corpus import sha256_file
from seq2seq.errors import OutputError
from seq2seq.inference.decoding import SearchSettings
from seq2seq.inference.translator import Translator

log = logging.getLogger(__name__)


def fingerprint(translator: Translator, settings: SearchSettings, sources: Sequence[str],
                batch_size: int) -> dict[str, Any]:
    """What decides the translations: the teachers' bytes, the search, the sources, the batches
    (a batch's padding can move a beam's scores by float rounding)."""
    return {
        "teachers": [{"path": str(path), "sha256": sha256_file(path)}
                     for path in translator.checkpoints],
        "quantization": translator.quantization,
        "search": {"beam_size": settings.beam_size, "length_penalty": settings.length_penalty,
                   "max_len_ratio": settings.max_len_ratio,
                   "max_len_offset": settings.max_len_offset},
        "batch_size": batch_size,
        "sources": {"lines": len(sources), "sha256": hashlib.sha256(
            "\n".join(sources).encode("utf-8")).hexdigest()},
    }


def length_batches(src_ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of the non-empty sources, sorted by length (stable), in batches of `batch_size`:
    little padding, and the same batches every time for the same sources."""
    todo = sorted((i for i, ids in enumerate(src_ids) if ids), key=lambda i: len(src_ids[i]))
    return [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]


def distill(translator: Translator, sources: Sequence[str], settings: SearchSettings,
            batch_size: int, journal: Path, progress: Callable[[int], None] = lambda lines: None,
            ) -> list[str]:
    """The teacher's best translation of each source, in order ("" for an empty line); the
    batches that `journal` already holds are taken from it. `progress(n)` hears of every n lines
    done, those read from the journal first. The journal stays: the caller removes it once the
    corpus it made is written."""
    encoded = translator.tokenizer.encode_src(list(sources))
    limit = settings.max_src_len
    if limit is not None and (longer := sum(len(ids) > limit for ids in encoded)):
        log.warning("%d sources have more than the %d subwords the teacher was trained with "
                    "(data.max_len): translated from their first %d", longer, limit, limit)
    src_ids = encoded if limit is None else [ids[:limit] for ids in encoded]
    done = _read_journal(journal, fingerprint(translator, settings, sources, batch_size))
    found = [""] * len(sources)
    for index, text in done.items():
        found[index] = text
    progress(len(done) + sum(not ids for ids in src_ids))
    with journal.open("ab") as out:
        for batch in length_batches(src_ids, batch_size):
            if all(index in done for index in batch):
                continue
            translations = translator.search_encoded([sources[i] for i in batch],
                                                     [src_ids[i] for i in batch], settings,
                                                     batch_size)
            for index, translation in zip(batch, translations, strict=True):
                found[index] = translation.text
            _append(out, journal, {"lines": [[i, found[i]] for i in batch]})
            progress(len(batch))
    return found


def _read_journal(journal: Path, expected: dict[str, Any]) -> dict[int, str]:
    """The translations a journal holds by line index ({} for a new journal, which gets its
    fingerprint). A last record cut short by a kill is dropped (and cut from the file)."""
    if not journal.exists() or journal.stat().st_size == 0:
        with journal.open("wb") as out:
            _append(out, journal, {"fingerprint": expected})
        return {}
    raw = journal.read_bytes()
    records, kept = [], 0
    for line in raw.splitlines(keepends=True):
        try:
            records.append(json.loads(line))
        except ValueError:
            break
        if not line.endswith(b"\n"):
            records.pop()
            break
        kept += len(line)
    if not records or records[0].get("fingerprint") != expected:
        raise OutputError(
            f"{journal} is the journal of other work (other teachers, search settings, sources "
            "or batch size): give another output folder, or delete it to start again")
    if kept < len(raw):
        with journal.open("r+b") as out:
            out.truncate(kept)
    return {int(index): text for record in records[1:] for index, text in record["lines"]}


def _append(out: BinaryIO, journal: Path, record: dict[str, Any]) -> None:
    """One JSON line, on disk before the next batch starts."""
    try:
        out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        out.flush()
        os.fsync(out.fileno())
    except OSError as error:
        raise OutputError(f"cannot write {journal}: {error.strerror or error}") from None

