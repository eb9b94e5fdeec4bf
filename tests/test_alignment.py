"""Word alignments from attention: pieces grouped into words, Pharaoh links and the soft matrix
for a hand-made attention matrix, and `translate.py --alignments` keeping N lines in, N out."""

from __future__ import annotations

import pytest
import torch

from seq2seq.inference.alignment import (
    format_soft,
    hard_links,
    pharaoh,
    word_attention,
    word_index,
)

# "ein Hund läuft" split as ein | Hu nd | läuft; "a dog runs" as a | dog | ru ns
SRC = ["▁ein", "▁Hu", "nd", "▁läuft"]
TGT = ["▁a", "▁dog", "▁ru", "ns"]
SOURCES = ["Ein Mann läuft.", "Zwei Hunde spielen im Schnee."]
# (heads=2, T + 1 = 5, S + 1 = 5): rows are target pieces then EOS, columns source pieces then EOS
HEAD = torch.tensor([
    [0.7, 0.1, 0.1, 0.0, 0.1],  # a -> ein
    [0.1, 0.3, 0.4, 0.1, 0.1],  # dog -> Hu nd (0.7 as a word)
    [0.0, 0.1, 0.1, 0.7, 0.1],  # ru -> läuft
    [0.3, 0.0, 0.0, 0.6, 0.1],  # ns -> läuft (mean with ru: 0.65)
    [0.0, 0.0, 0.0, 0.0, 1.0],  # EOS row: left out
])


def test_pieces_are_grouped_into_words_at_the_word_start_mark():
    assert word_index(SRC) == [0, 1, 1, 2]
    # a lone "▁" is a space: it belongs to no word and starts the next one
    assert word_index(["Hu", "nd", "▁", "(", "▁x", "▁", "▁"]) == [0, 0, -1, 1, 2, -1, -1]
    assert word_index([]) == []


def test_word_attention_sums_source_pieces_and_averages_target_pieces():
    shift = 0.1 * (HEAD - HEAD.flip(0))
    weights = torch.stack([HEAD + shift, HEAD - shift])  # two heads whose mean is HEAD
    matrix = word_attention(weights, SRC, TGT)
    expected = torch.tensor([[0.7, 0.2, 0.0],
                             [0.1, 0.7, 0.1],
                             [0.15, 0.1, 0.65]])
    torch.testing.assert_close(matrix, expected)
    assert hard_links(matrix) == [(0, 0), (1, 1), (2, 2)]
    assert pharaoh(hard_links(matrix)) == "0-0 1-1 2-2"
    assert format_soft(matrix) == "0.7000,0.2000,0.0000 0.1000,0.7000,0.1000 " \
                                  "0.1500,0.1000,0.6500"


def test_links_are_sorted_by_source_then_target_word():
    matrix = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])  # 3 target words, 2 source
    assert pharaoh(hard_links(matrix)) == "0-1 1-0 1-2"
    assert hard_links(torch.zeros(0, 3)) == [] and pharaoh([]) == ""


def test_a_lone_space_piece_counts_for_no_word():
    weights = torch.full((1, 4, 3), 0.25)  # pieces ▁A ▁ ▁B + EOS over ▁x y + EOS
    matrix = word_attention(weights, ["▁x", "y"], ["▁A", "▁", "▁B"])
    torch.testing.assert_close(matrix, torch.full((2, 1), 0.5))


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_alignments_keep_n_lines_in_n_out(kind, trained_checkpoint, run_command):
    done = run_command("translate", ["--checkpoint", str(trained_checkpoint), "--beam", "2",
                                     "--alignments", kind],
                       stdin=f"{SOURCES[0]}\n\n{SOURCES[1]}\n".encode())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(" ||| " in line for line in lines)
    assert lines[1] == " ||| "
    for line, source in ((lines[0], SOURCES[0]), (lines[2], SOURCES[1])):
        text, alignment = line.split(" ||| ")
        if kind == "hard":  # every target word linked once, to a source word
            links = [tuple(map(int, link.split("-"))) for link in alignment.split()]
            assert sorted(j for _, j in links) == list(range(len(text.split())))
            assert all(0 <= i < len(source.split()) for i, _ in links)
        else:  # one row per target word, one weight per source word
            rows = [[float(w) for w in row.split(",")] for row in alignment.split()]
            assert len(rows) == len(text.split())
            assert all(len(row) == len(source.split()) for row in rows)


def test_nbest_alignments_come_per_hypothesis_line(trained_checkpoint, run_command):
    done = run_command("translate", ["--checkpoint", str(trained_checkpoint), "--beam", "3",
                                     "--nbest", "2", "--alignments", "hard"],
                       stdin=b"Ein Mann.\n\n")
    rows = done.stdout.splitlines()
    assert len(rows) == 4 and all(" ||| " in row for row in rows)
    assert rows[2:] == ["1\t1\t0.0000\t ||| ", "1\t2\t-inf\t ||| "]
