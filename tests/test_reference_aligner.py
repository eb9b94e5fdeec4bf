"""The reference aligner: symmetrisation by hand, eflomal on a small corpus (the real package,
as CI installs it), and `align.py` writing N Pharaoh lines for N pairs of each split."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

from seq2seq.analysis.aer import aligner_of, aligner_record
from seq2seq.analysis.reference_aligner import align_pairs, symmetrise

# forward (source -> target) and reverse directions of one sentence pair, both as (i, j)
FORWARD = {(0, 0), (1, 1), (2, 1), (4, 4)}
REVERSE = {(0, 0), (1, 1), (2, 2), (4, 5)}


def test_symmetrisations_equal_their_definitions():
    assert symmetrise(FORWARD, REVERSE, "intersection") == [(0, 0), (1, 1)]
    assert symmetrise(FORWARD, REVERSE, "union") == sorted(FORWARD | REVERSE)
    assert symmetrise(FORWARD, REVERSE, "forward") == sorted(FORWARD)
    # grow-diag: (2, 1) and (2, 2) neighbour (1, 1) and align the unaligned source word 2 or
    # target word 2; (4, 4) and (4, 5) neighbour no link. final-and then adds the forward
    # (4, 4) (both words unaligned), and so not the reverse (4, 5) (source word 4 is aligned)
    assert symmetrise(FORWARD, REVERSE, "grow-diag-final-and") == [
        (0, 0), (1, 1), (2, 1), (2, 2), (4, 4)]


WORDS = [("hund", "dog"), ("katze", "cat"), ("haus", "house"), ("rot", "red"),
         ("groß", "big"), ("klein", "small"), ("baum", "tree"), ("auto", "car")]


def small_corpus() -> tuple[list[str], list[str]]:
    """Two-word phrases whose words translate one to one, the target in swapped order."""
    sources, targets = [], []
    for (a, x), (b, y) in itertools.permutations(WORDS, 2):
        sources.append(f"{a} {b}")
        targets.append(f"{y} {x}")
    return sources, targets


def test_eflomal_finds_the_one_to_one_links_and_skips_empty_pairs():
    sources, targets = small_corpus()
    links = align_pairs(sources + ["", "hund"], targets + ["dog", ""])
    assert links[-2:] == [[], []]
    right = sum(pair == [(0, 1), (1, 0)] for pair in links[:-2])
    assert right >= 0.9 * len(sources)


def test_unknown_symmetrisation_and_mismatched_sides_are_refused():
    with pytest.raises(ValueError, match="choose from grow-diag-final-and"):
        align_pairs(["a"], ["b"], "diagonal")
    with pytest.raises(Exception, match="1 source lines but 2 target lines"):
        align_pairs(["a"], ["b", "c"])


def test_align_cli_writes_one_line_per_pair_of_each_split(run_command, tmp_path):
    sources, targets = small_corpus()
    (tmp_path / "train.de.gz").write_bytes(gzip.compress("\n".join(sources).encode() + b"\n"))
    (tmp_path / "train.en").write_text("\n".join(targets) + "\n")
    (tmp_path / "val.de").write_text("hund katze\n\nauto baum\n")
    (tmp_path / "val.en").write_text("cat dog\nred\ntree car\n")
    done = run_command("align", ["--pair", "train.de.gz", "train.en", "out/train.align",
                                 "--pair", "val.de", "val.en", "val.align"])
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "out/train.align").read_text().splitlines()) == len(sources)
    assert (tmp_path / "val.align").read_text().splitlines() == ["0-1 1-0", "", "0-1 1-0"]
    assert "aligned 59 pairs with eflomal (grow-diag-final-and)" in done.stdout
    # the record that makes scores against the file "agreement with eflomal"
    assert aligner_of(tmp_path / "val.align") == "eflomal (grow-diag-final-and)"
    assert json.loads(aligner_record(tmp_path / "out/train.align").read_text())["pairs"] == \
        len(sources)


def test_align_cli_refuses_sides_of_different_lengths_in_one_line(run_command, tmp_path):
    (tmp_path / "a.de").write_text("a\nb\n")
    (tmp_path / "a.en").write_text("x\n")
    done = run_command("align", ["--pair", "a.de", "a.en", "a.align"])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: a.de has 2 lines but a.en has 1: a pair needs one target line per source"]
    assert not (tmp_path / "a.align").exists()
