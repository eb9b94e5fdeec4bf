"""Guided alignment: the targets built from word links, the loss, and runs that train with it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from alignments import diagonal_links
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.analysis.aer import parse_links
from seq2seq.config import AdditiveAttentionConfig, ConfigError, ModelConfig
from seq2seq.data.batching import collate
from seq2seq.data.prepare import prepare_data
from seq2seq.errors import DataError
from seq2seq.nn.model import build_model
from seq2seq.training.guided_alignment import (
    AlignedPair,
    GuidedAlignment,
    alignment_loss,
    load_guided_alignment,
)
from seq2seq.training.loss import SequenceLoss


def one_pair_batch(src_len: int, tgt_len: int):
    return collate([(0, np.arange(4, 4 + src_len), np.arange(4, 4 + tgt_len))])


def test_word_links_spread_to_pieces_and_rows_are_distributions():
    # source words: piece 0 | pieces 1, 2; target words: piece 0 | pieces 1, 2
    pair = AlignedPair(links=np.array([[1, 0], [0, 1]]), src_words=np.array([0, 1, 1]),
                       tgt_words=np.array([0, 1, 1]))
    target = GuidedAlignment([pair]).targets(one_pair_batch(3, 3))
    expected = torch.tensor([[0, 0.5, 0.5, 0],  # target word 0 <- source word 1's two pieces
                             [1, 0, 0, 0],  # target word 1 <- source word 0, in both pieces
                             [1, 0, 0, 0],
                             [0, 0, 0, 0]])  # EOS row (and EOS column) without a target
    torch.testing.assert_close(target[0], expected)


def test_an_unlinked_word_and_a_lone_space_piece_get_no_target():
    pair = AlignedPair(links=np.array([[0, 0]]), src_words=np.array([-1, 0]),
                       tgt_words=np.array([0, 1]))
    target = GuidedAlignment([pair, None]).targets(one_pair_batch(2, 2))
    torch.testing.assert_close(target[0], torch.tensor([[0, 1.0, 0], [0, 0, 0], [0, 0, 0]]))


def test_the_loss_is_zero_for_attention_equal_to_the_alignment_and_positive_otherwise():
    target = torch.tensor([[[0, 0.5, 0.5, 0], [1, 0, 0, 0], [0, 0, 0, 0]]])  # (1, T, S)
    unlinked_row = torch.tensor([0.1, 0.2, 0.3, 0.4])  # rows without links do not count
    equal = torch.stack([target[0, 0], target[0, 1], unlinked_row])[None, None]  # (1, 1, T, S)
    assert float(alignment_loss(equal, target)) == pytest.approx(0.0, abs=1e-7)
    two_heads = torch.cat([equal, equal], dim=1)  # heads are averaged
    assert float(alignment_loss(two_heads, target)) == pytest.approx(0.0, abs=1e-7)
    uniform = torch.full((1, 1, 3, 4), 0.25)
    # KL of each linked row against the uniform: log(4) - H(row) = log 2 + log 4
    assert float(alignment_loss(uniform, target)) == pytest.approx(np.log(2) + np.log(4))


def test_training_with_the_loss_pulls_the_attention_to_the_alignment():
    torch.manual_seed(0)
    model = build_model(ModelConfig(embedding_size=16, hidden_size=16, embedding_dropout=0.0,
                                    output_dropout=0.0),
                        AdditiveAttentionConfig(), 20, 20)
    loss = SequenceLoss(model)
    src, tgt = torch.randint(4, 20, (2, 5)), torch.randint(4, 20, (2, 4))
    batch = collate([(0, src[0].numpy(), tgt[0].numpy()), (1, src[1].numpy(), tgt[1].numpy())])
    diagonal = AlignedPair(np.array([[i, i] for i in range(4)]), np.arange(5), np.arange(4))
    reverse = AlignedPair(np.array([[4 - i, i] for i in range(4)]), np.arange(5), np.arange(4))
    target = GuidedAlignment([diagonal, reverse]).targets(batch)

    @torch.no_grad()
    def guided_only() -> float:
        memory, state = model.start(batch.src, batch.src_lengths)
        _, weights = model.decoder.features(batch.tgt_in, memory, state, need_weights=True)
        return float(alignment_loss(weights, target))

    before = guided_only()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        translation, alignment = loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out,
                                      0.0, target)
        (translation + 10.0 * alignment).backward()
        optimizer.step()
    assert guided_only() < before / 3


def test_each_training_pair_gets_the_links_of_its_own_line(tiny_data_config, tiny_corpus_dir,
                                                            tmp_path):
    # data.max_len=12 drops some pairs, so positions in the training set are not line numbers
    cfg = dataclasses.replace(tiny_data_config, max_len=12)
    data = prepare_data(cfg)
    sources = (tiny_corpus_dir / "tiny" / "train.de").read_text(encoding="utf-8").splitlines()
    targets = (tiny_corpus_dir / "tiny" / "train.en").read_text(encoding="utf-8").splitlines()
    assert len(data.train) < len(sources)
    # line k links source word k % I to target word 0: a different link on each line
    lines = [f"{k % len(src.split())}-0" for k, src in enumerate(sources)]
    path = tmp_path / "train.align"
    path.write_text("\n".join(lines) + "\n")
    guided = load_guided_alignment(str(path), 1.0, data, cfg)
    assert len(guided.pairs) == len(data.train)
    checked = 0
    for position, pair in enumerate(guided.pairs):
        _, src_ids, tgt_ids = data.train[position]
        src, tgt = data.tokenizer.decode_src([src_ids])[0], data.tokenizer.decode_tgt([tgt_ids])[0]
        candidates = {lines[k] for k in range(len(sources))
                      if sources[k] == src and targets[k] == tgt}
        assert pair is not None and len(candidates) >= 1
        if len(candidates) == 1:  # a sentence pair that occurs once: its line is known
            expected = parse_links(candidates.pop(), len(src.split()), 1, "").possible
            assert {tuple(link) for link in pair.links.tolist()} == expected
            checked += 1
    assert checked > len(data.train) // 2


def test_a_file_of_another_length_or_with_a_bad_link_names_it(tiny_data_config, tmp_path):
    data = prepare_data(tiny_data_config)
    path = tmp_path / "train.align"
    path.write_text("0-0\n")
    with pytest.raises(DataError, match=r"train.align has 1 lines but the training files have "
                                        r"400: it needs one alignment line per line"):
        load_guided_alignment(str(path), 1.0, data, tiny_data_config)
    path.write_text("0-0\n" * 2 + "0-99\n" + "0-0\n" * 397)
    with pytest.raises(DataError, match=r"train.align line 3: 0-99 is out of range"):
        load_guided_alignment(str(path), 1.0, data, tiny_data_config)


def train_pairs(tiny_corpus_dir) -> list[tuple[str, str]]:
    tiny = tiny_corpus_dir / "tiny"
    return list(zip((tiny / "train.de").read_text(encoding="utf-8").splitlines(),
                    (tiny / "train.en").read_text(encoding="utf-8").splitlines(), strict=True))


def test_a_run_trains_with_guided_alignment(tiny_run, tiny_corpus_dir, tmp_path, run_command):
    links = tmp_path / "train.align"
    links.write_text(diagonal_links(train_pairs(tiny_corpus_dir)))
    run_dir = tmp_path / "run"
    done = run_command("train", [*tiny_run, "train.max_steps=4", f"hydra.run.dir={run_dir}",
                                 "train.guided_alignment.weight=1", "train.log_every=1",
                                 f"train.guided_alignment.file={links}"])
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 4
    assert results["config"]["train"]["guided_alignment"] == {"weight": 1.0, "file": str(links)}
    assert "guided alignment (weight 1): links of 400 training pairs" in \
        (run_dir / "train.log").read_text()
    # the alignment loss is a curve of its own; the train loss is the translation loss alone
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    assert [e.step for e in events.Scalars("2_train/alignment_loss")] == [1, 2, 3, 4]
    assert all(e.value > 0 for e in events.Scalars("2_train/alignment_loss"))


def test_a_bad_training_alignment_file_stops_the_run_before_training(tiny_run, tmp_path,
                                                                     run_command):
    links = tmp_path / "train.align"
    links.write_text("0-0\n")
    run_dir = tmp_path / "run"
    done = run_command("train", [*tiny_run, f"hydra.run.dir={run_dir}",
                                 "train.guided_alignment.weight=1",
                                 f"train.guided_alignment.file={links}"])
    assert done.returncode == 1
    assert f"{links} has 1 lines but the training files have 400" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.guided_alignment.weight=1"], "train.guided_alignment.file=None is invalid"),
    (["train.guided_alignment.file=x.align"], "train.guided_alignment.file='x.align' is invalid"),
    (["train.guided_alignment.weight=-1", "train.guided_alignment.file=x.align"],
     "train.guided_alignment.weight=-1.0 is invalid"),
    (["train.guided_alignment.weight=1", "train.guided_alignment.file=x.align",
      "data.tokenizer.sampling.enabled=true"],
     "train.guided_alignment.weight=1.0 is invalid: expected 0 with data.tokenizer.sampling"),
])
def test_guided_alignment_settings_are_checked_at_once(compose, tiny_run, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        compose([*tiny_run, *overrides])
