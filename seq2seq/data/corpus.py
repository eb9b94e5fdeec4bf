"""Parallel corpora: the Multi30k catalogue, download and local import, and file readers.

Every file is read strictly as UTF-8, line by line, so that an error can name the file and the
line. Files that are fetched (downloaded or imported) are sha256-verified and written to a temp
file that is renamed into place, so a failure never leaves a half-written file behind.

Multi30k: Elliott et al. 2016, "Multi30K: Multilingual English-German Image Descriptions".
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import BinaryIO

from seq2seq.errors import DataError
from seq2seq.files import atomic_writer, iter_lines, open_binary

logger = logging.getLogger(__name__)

MULTI30K_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{split}.{lang}.gz"
)
MULTI30K_LANGS = ("de", "en", "fr", "cs")
MULTI30K_SPLITS = (
    "train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr",
)
# sha256 of each gzip file of Multi30k task 1; there is no Czech for the 2017 test sets.
MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "test_2016_flickr.cs.gz": "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1",
    "test_2017_flickr.de.gz": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
    "test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
    "test_2017_flickr.fr.gz": "3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496",
    "test_2017_mscoco.de.gz": "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338",
    "test_2017_mscoco.en.gz": "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58",
    "test_2017_mscoco.fr.gz": "754f3072ba9f124569ba5258b32730fc1d214bbf8e0c6dfb2b74401676220db0",
    "test_2018_flickr.de.gz": "ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608",
    "test_2018_flickr.en.gz": "ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d",
    "test_2018_flickr.fr.gz": "fb2b83fcceb937a4f7e3e93c1c51c22aba92f1e342391e6b5ba392b16a920501",
    "test_2018_flickr.cs.gz": "7d0a9db904f94c554a8c58049a9f3a5357c27f46cc3d710d70cb0b4a2585b8c2",
}
_CHUNK = 1 << 20

Pairs = list[tuple[str, str]]


# --- Multi30k ---------------------------------------------------------------------------------


def multi30k_filename(split: str, lang: str) -> str:
    """The file name of one side of a Multi30k split; an unknown pair lists what exists."""
    name = f"{split}.{lang}.gz"
    if name not in MULTI30K_SHA256:
        available = ", ".join(
            s for s in MULTI30K_SPLITS if f"{s}.{lang}.gz" in MULTI30K_SHA256
        )
        if lang not in MULTI30K_LANGS:
            raise DataError(
                f"Multi30k has no language {lang!r}: choose from {', '.join(MULTI30K_LANGS)}"
            )
        raise DataError(
            f"Multi30k has no split {split!r} for language {lang!r}; "
            f"splits available for {lang!r}: {available}"
        )
    return name


def fetch_multi30k(split: str, lang: str, raw_dir: Path, source: Path | None = None) -> Path:
    """Return the verified path of ``{split}.{lang}.gz`` in ``raw_dir``, fetching it if needed.

    With ``source`` the file is copied from that local directory, else downloaded from
    MULTI30K_URL. Either way it is verified against MULTI30K_SHA256 before it is renamed into
    place. A file already in ``raw_dir`` is verified again (it is small) and reused.
    """
    name = multi30k_filename(split, lang)
    expected = MULTI30K_SHA256[name]
    target = raw_dir / name
    if target.exists():
        actual = sha256_file(target)
        if actual != expected:
            raise DataError(
                f"{target} has sha256 {actual}, expected {expected}: the file is corrupt or "
                "not the Multi30k original; delete it to fetch it again"
            )
        return target

    raw_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:
        origin = source / name
        if not origin.is_file():
            raise DataError(
                f"{origin} not found: data.source must be a directory holding the Multi30k "
                f"{{split}}.{{lang}}.gz files (download them from "
                f"{MULTI30K_URL.format(split=split, lang=lang)}), or leave data.source unset "
                "to download them"
            )
        logger.info("importing %s from %s", name, source)
        with open_binary(origin) as stream:
            _write_verified(stream, target, expected, origin=str(origin))
    else:
        url = MULTI30K_URL.format(split=split, lang=lang)
        logger.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as stream:
                _write_verified(stream, target, expected, origin=url)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise DataError(
                f"could not download {url} ({reason}); without internet access, copy the "
                "Multi30k .gz files into a directory and set data.source=/path/to/that/dir"
            ) from None
    return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open_binary(path) as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_verified(stream: BinaryIO, target: Path, expected: str, origin: str) -> None:
    """Copy ``stream`` to ``target`` atomically, refusing it unless its sha256 is ``expected``."""
    digest = hashlib.sha256()
    with atomic_writer(target) as out:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise DataError(
                f"checksum mismatch for {target.name} from {origin}: sha256 {actual}, "
                f"expected {expected}; the file is corrupt or not the Multi30k original"
            )


# --- readers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlignedFiles:
    """The sentence pairs of two line-aligned files, read from disk at every iteration (so that
    a corpus too large to hold in memory can be passed over more than once); their line counts
    must agree."""

    src: Path
    tgt: Path

    def __iter__(self) -> Iterator[tuple[str, str]]:
        src_lines, tgt_lines = iter_lines(self.src), iter_lines(self.tgt)
        count = 0
        for src, tgt in zip_longest(src_lines, tgt_lines):
            if src is None or tgt is None:
                src_count = count + (src is not None) + sum(1 for _ in src_lines)
                tgt_count = count + (tgt is not None) + sum(1 for _ in tgt_lines)
                raise DataError(
                    f"{self.src} has {src_count} lines but {self.tgt} has {tgt_count}: aligned "
                    "files must hold one sentence per line, in the same order"
                )
            count += 1
            yield src, tgt


@dataclass(frozen=True)
class TsvFile:
    """The sentence pairs of a ``source<TAB>target[<TAB>...]`` file, read from disk at every
    iteration; further columns are ignored.

    A line with no TAB at all is an error, but an empty line is an empty pair (which the
    training data drops), so that the line numbers of the file and the pairs agree.
    """

    path: Path

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for lineno, line in enumerate(iter_lines(self.path), start=1):
            if not line:
                yield "", ""
                continue
            columns = line.split("\t")
            if len(columns) < 2:
                raise DataError(
                    f"{self.path}, line {lineno}: no TAB found; a TSV corpus needs "
                    "source<TAB>target on every line"
                )
            yield columns[0], columns[1]


def read_aligned(src_path: Path, tgt_path: Path) -> Pairs:
    """All sentence pairs of two line-aligned files; see AlignedFiles."""
    return list(AlignedFiles(src_path, tgt_path))


def read_tsv(path: Path) -> Pairs:
    """All sentence pairs of a TSV file; see TsvFile."""
    return list(TsvFile(path))


