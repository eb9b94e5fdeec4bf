"""Readers, the Multi30k catalogue, verified download and import, and their errors."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import urllib.error

import pytest

from seq2seq.data import corpus
from seq2seq.data.corpus import (
    MULTI30K_SHA256,
    fetch_multi30k,
    multi30k_filename,
    read_aligned,
    read_tsv,
)
from seq2seq.errors import DataError
from seq2seq.files import read_lines

COMPRESSORS = {"gzip": (gzip.compress, ".gz"), "xz": (lzma.compress, ".xz"),
               "bzip2": (bz2.compress, ".bz2")}


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_plain_and_compressed_files_read_the_same(tmp_path, kind):
    compress, suffix = COMPRESSORS[kind]
    text = "Ein Mädchen läuft über die Straße.\r\nZwei Männer.\n\n  \nLetzte Zeile ohne Ende"
    plain = tmp_path / "a.de"
    plain.write_bytes(("\ufeff" + text).encode("utf-8"))  # a BOM is dropped
    zipped = tmp_path / f"b.de{suffix.upper()}"  # told by the suffix, in any case
    zipped.write_bytes(compress(text.encode("utf-8")))

    expected = ["Ein Mädchen läuft über die Straße.", "Zwei Männer.", "", "  ",
                "Letzte Zeile ohne Ende"]
    assert read_lines(plain) == expected
    assert read_lines(zipped) == expected


def test_a_plain_file_is_plain_whatever_its_first_bytes(tmp_path):
    """Told by the name, not the content: "BZh ist ein Wort." is German, not bzip2."""
    path = tmp_path / "satz.de"
    path.write_text("BZh ist ein Wort.\nZwei.\n", encoding="utf-8")
    assert read_lines(path) == ["BZh ist ein Wort.", "Zwei."]


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_a_compressed_file_without_its_suffix_is_named_as_such(tmp_path, kind):
    compress, suffix = COMPRESSORS[kind]
    path = tmp_path / "train.de"
    path.write_bytes(compress(("Ein Satz.\n" * 50).encode()))
    with pytest.raises(DataError) as error:
        read_lines(path)
    assert str(error.value) == (f"{path} holds {kind} data but its name does not end in "
                                f"{suffix}: compressed files are told by their name; rename it "
                                f"train.de{suffix}")


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_a_plain_file_named_as_compressed_is_refused_as_such(tmp_path, kind):
    _, suffix = COMPRESSORS[kind]
    path = tmp_path / f"satz.de{suffix}"
    path.write_text("Ein Satz.\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"satz.de{suffix} is a truncated or corrupt {kind} "):
        read_lines(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_cr_only_line_endings_are_named_with_what_to_do(tmp_path, suffix):
    path = tmp_path / f"mac.de{suffix}"
    data = "Ein Hund.\rEine Katze.\rZwei Männer.\r".encode()
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(DataError) as error:
        read_lines(path)
    assert str(error.value) == (f"{path} has CR-only (old Mac) line endings: lines must end in "
                                "\\n or \\r\\n; convert it, e.g. with tr '\\r' '\\n' < OLD > NEW")


def test_line_separators_inside_a_line_do_not_split_it(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("eins\u2028zwei\x0cdrei\nvier\n", encoding="utf-8")
    assert read_lines(path) == ["eins\u2028zwei\x0cdrei", "vier"]
    path.write_bytes(b"eins\r\nzwei\rdrei\r\n")  # a stray CR in a file split at \n
    assert read_lines(path) == ["eins", "zwei\rdrei"]


def test_aligned_files_give_pairs_in_order(tiny_corpus_dir):
    tiny = tiny_corpus_dir / "tiny"
    pairs = read_aligned(tiny / "train.de", tiny / "train.en")
    assert len(pairs) == 400
    assert pairs[0] == ("Eine Katze wartet auf einer Wiese.", "A cat waits in a meadow.")
    gz = read_aligned(tiny_corpus_dir / "multi30k" / "train.de.gz",
                      tiny_corpus_dir / "multi30k" / "train.en.gz")
    assert gz == pairs


def test_tsv_takes_two_columns_and_ignores_the_rest(tmp_path, tiny_corpus_dir):
    path = tmp_path / "pairs.tsv"
    path.write_text("Hallo.\tHello.\tCC-BY 2.0 #1\nJa.\tYes.\n\nNein.\t\n", encoding="utf-8")
    assert read_tsv(path) == [("Hallo.", "Hello."), ("Ja.", "Yes."), ("", ""), ("Nein.", "")]
    assert read_tsv(tiny_corpus_dir / "tiny" / "val.tsv") == read_aligned(
        tiny_corpus_dir / "tiny" / "val.de", tiny_corpus_dir / "tiny" / "val.en")


def test_tsv_line_without_tab_names_the_line(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("Hallo.\tHello.\nkein Tab hier\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.tsv, line 2: no TAB"):
        read_tsv(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothing.de not found"):
        read_lines(tmp_path / "nothing.de")


def test_line_count_mismatch_gives_both_counts(tmp_path):
    (tmp_path / "a.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a.de has 3 lines but .*a.en has 2"):
        read_aligned(tmp_path / "a.de", tmp_path / "a.en")


@pytest.mark.parametrize("compress", [False, True])
def test_invalid_utf8_names_file_and_line(tmp_path, compress):
    data = "grün\nauch gut\n".encode() + b"kaputt \xff\xfe\n"
    path = tmp_path / ("bad.de.gz" if compress else "bad.de")
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=r"bad.de(.gz)?, line 3: invalid UTF-8"):
        read_lines(path)


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_a_truncated_compressed_file_names_the_file_and_its_format(tmp_path, kind):
    compress, suffix = COMPRESSORS[kind]
    data = compress(("Ein Satz.\n" * 5000).encode())
    path = tmp_path / f"cut.de{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"cut.de{suffix} is a truncated or corrupt {kind} file"):
        read_lines(path)


def test_corrupt_gzip_names_the_file(tmp_path):
    data = bytearray(gzip.compress(("Ein Satz.\n" * 100).encode()))
    data[20:30] = b"\x00" * 10
    path = tmp_path / "broken.de.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"broken.de.gz is a truncated or corrupt gzip file"):
        read_lines(path)


# --- Multi30k ---------------------------------------------------------------------------------


def test_catalogue_has_every_split_but_no_czech_2017():
    assert len(MULTI30K_SHA256) == 22
    assert multi30k_filename("test_2018_flickr", "cs") == "test_2018_flickr.cs.gz"
    with pytest.raises(DataError) as error:
        multi30k_filename("test_2017_flickr", "cs")
    message = str(error.value)
    assert "no split 'test_2017_flickr' for language 'cs'" in message
    assert "train, val, test_2016_flickr, test_2018_flickr" in message
    with pytest.raises(DataError, match="no language 'xx': choose from de, en, fr, cs"):
        multi30k_filename("train", "xx")


def test_import_verifies_and_copies(multi30k_dir, tmp_path):
    raw = tmp_path / "raw"
    path = fetch_multi30k("val", "de", raw, source=multi30k_dir)
    assert path == raw / "val.de.gz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MULTI30K_SHA256["val.de.gz"]
    assert [p.name for p in raw.iterdir()] == ["val.de.gz"]
    # a second call reuses the verified file without the source
    assert fetch_multi30k("val", "de", raw, source=None) == path


def test_import_with_wrong_checksum_leaves_nothing(tiny_corpus_dir, tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(DataError) as error:
        fetch_multi30k("val", "de", raw, source=tiny_corpus_dir / "multi30k")
    message = str(error.value)
    actual = hashlib.sha256((tiny_corpus_dir / "multi30k" / "val.de.gz").read_bytes()).hexdigest()
    assert "checksum mismatch for val.de.gz" in message
    assert actual in message and MULTI30K_SHA256["val.de.gz"] in message
    assert list(raw.iterdir()) == []


def test_import_of_a_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as error:
        fetch_multi30k("val", "de", tmp_path / "raw", source=tmp_path)
    message = str(error.value)
    assert "val.de.gz not found" in message
    assert "https://raw.githubusercontent.com/multi30k/dataset" in message


def test_a_tampered_cached_file_is_reported(multi30k_dir, tmp_path):
    raw = tmp_path / "raw"
    path = fetch_multi30k("val", "en", raw, source=multi30k_dir)
    path.write_bytes(b"not the original")
    with pytest.raises(DataError, match="val.en.gz has sha256 .* delete it to fetch it again"):
        fetch_multi30k("val", "en", raw, source=multi30k_dir)


def test_download_verifies_and_renames(multi30k_dir, tmp_path, monkeypatch):
    requested = []

    def fake_urlopen(url, timeout):
        requested.append(url)
        return io.BytesIO((multi30k_dir / "val.en.gz").read_bytes())

    monkeypatch.setattr(corpus.urllib.request, "urlopen", fake_urlopen)
    path = fetch_multi30k("val", "en", tmp_path)
    assert requested == [
        "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/val.en.gz"
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["val.en.gz"]
    assert len(read_lines(path)) == 1014


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus.urllib.request, "urlopen",
                        lambda url, timeout: io.BytesIO(b"<html>rate limited</html>"))
    with pytest.raises(DataError, match="checksum mismatch for val.en.gz from https://"):
        fetch_multi30k("val", "en", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_without_network_suggests_data_source(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(corpus.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"could not download .*val.en.gz.*data.source="):
        fetch_multi30k("val", "en", tmp_path)
    assert list(tmp_path.iterdir()) == []
