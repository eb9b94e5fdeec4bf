"""Checkpoints are written atomically and loaded only through the weights-only unpickler."""

import json
import pickle
import shutil

import pytest
import torch

from seq2seq.checkpoint import FORMAT_VERSION, load_checkpoint, resolve_checkpoint, save_checkpoint
from seq2seq.errors import CheckpointError
from seq2seq.training.resume import restore_rng_states, rng_states


def payload(value: float = 1.0) -> dict:
    return {"model": {"w": torch.full((2, 2), value)}, "config": {"seed": 1},
            "tokenizer": {"src": b"abc", "tgt": b"abc"}}


def test_round_trip(tmp_path):
    save_checkpoint(payload(3.0), tmp_path / "checkpoints" / "best.pt")
    loaded = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert loaded["format_version"] == FORMAT_VERSION
    assert torch.equal(loaded["model"]["w"], torch.full((2, 2), 3.0))
    assert loaded["tokenizer"]["src"] == b"abc"


def test_crash_mid_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(payload(1.0), path)
    real_save = torch.save

    def crash_after_partial_write(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(10)  # a half-written file...
        raise OSError("disk full")  # ...and the process dies

    monkeypatch.setattr(torch, "save", crash_after_partial_write)
    with pytest.raises(CheckpointError, match="could not write .*last.pt keeps its previous"):
        save_checkpoint(payload(2.0), path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((2, 2), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left


class Evil:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_pickle_with_custom_object_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({**payload(), "format_version": FORMAT_VERSION, "extra": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(path)
    assert "never run" not in capsys.readouterr().out


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [
    b"", b"not a checkpoint at all", b"PK\x03\x04broken",
    # text and pickle-like first bytes that make torch.load raise KeyError, IndexError, ...
    b"hello world", b"K", b"\x80\x02abc", b"}garbage", b"\x80\x04\x95",
])
def test_garbage_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "t.pt"
    save_checkpoint(payload(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_tensor_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="not a seq2seq checkpoint"):
        load_checkpoint(path)


def test_other_format_version_is_refused(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({**payload(), "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(path)


def test_a_checkpoint_from_before_per_scorer_settings_is_refused_in_one_line(tmp_path):
    """Format 1 had one flat attention config and a "dot" with a learned key map."""
    path = tmp_path / "v1.pt"
    torch.save({**payload(), "format_version": 1}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "format version 1" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("part, value, message", [
    ("config", "hidden_size: 64", "its config is of type str, not a dict of settings"),
    ("model", "weights", "its model is of type str, not a dict of tensors (a state_dict)"),
    ("model", {"w": 1.0}, "its model entry 'w' is of type float, not a tensor"),
    ("tokenizer", b"abc",
     "its tokenizer is of type bytes, not a dict of the src and tgt subword models as bytes"),
    ("tokenizer", {"src": "abc", "tgt": b"abc"},
     "its tokenizer's src model is of type str, not bytes"),
    ("tokenizer", {"src": b"abc"}, "its tokenizer's tgt model is of type NoneType, not bytes"),
    ("state", [1, 2], "its state is of type list, not a dict"),
    ("training_data", "junk",
     "its training_data is of type str, not a dict (its data's digest and held-out pairs)"),
    ("training_data", {"train_digest": "ab", "held_out": {"test": "keys"}},
     "its training data's held-out pairs are not a dict of bytes (split -> pair keys)"),
])
def test_a_part_of_the_wrong_type_is_refused_in_one_line(tmp_path, part, value, message):
    """A config that was a string once ended in an AttributeError traceback."""
    path = tmp_path / "odd.pt"
    torch.save({**payload(), "format_version": FORMAT_VERSION, part: value}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value) == f"{path} is not a seq2seq checkpoint: {message}"


def test_non_finite_weights_are_refused_naming_the_first_tensor(tmp_path):
    """They once translated every line to an empty one, with exit code 0."""
    weights = {"a": torch.ones(2), "b": torch.tensor([1.0, float("nan")]),
               "c": torch.tensor([float("inf")]), "steps": torch.tensor([3])}
    save_checkpoint({**payload(), "model": weights}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "nan.pt")
    assert str(error.value) == (f"{tmp_path / 'nan.pt'}: tensor b (and 1 other tensor) holds NaN "
                                "or infinite weights, which only a diverged run saves: use an "
                                "earlier checkpoint")


def test_missing_checkpoint_and_run_dir_resolution(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_checkpoint(tmp_path)
    save_checkpoint(payload(), tmp_path / "checkpoints" / "best.pt")
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "best.pt"
    assert resolve_checkpoint(tmp_path / "checkpoints") == tmp_path / "checkpoints" / "best.pt"


@pytest.mark.parametrize("results, final", [
    ({"averaging": {"final": True}}, "averaged.pt"),
    ({"averaging": {"final": False}}, "best.pt"),
    ({"averaging": None}, "best.pt"),  # a run without checkpoint averaging
    (None, "best.pt"),  # no results.json: the run has not finished
    ("{not json", "best.pt"),
])
def test_a_run_dir_stands_for_its_final_model(tmp_path, results, final):
    """Where checkpoint averaging won on val, the run scores averaged.pt: that is its model."""
    for name in ("best.pt", "averaged.pt"):
        save_checkpoint(payload(), tmp_path / "checkpoints" / name)
    if results is not None:
        text = results if isinstance(results, str) else json.dumps(results)
        (tmp_path / "results.json").write_text(text)
    expected = tmp_path / "checkpoints" / final
    assert resolve_checkpoint(tmp_path) == resolve_checkpoint(tmp_path / "checkpoints") == expected
    assert resolve_checkpoint(tmp_path, "best.pt") == tmp_path / "checkpoints" / "best.pt"


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    save_checkpoint({**payload(), "rng": rng_states()}, tmp_path / "c.pt")
    expected = torch.rand(3)
    restore_rng_states(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert torch.equal(torch.rand(3), expected)


def test_a_full_disk_while_saving_names_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(payload(), path)
    before = path.read_bytes()

    def full_disk(obj, handle):  # what torch.save raises when a write comes up short
        handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(1, 1, 0))
    with pytest.raises(CheckpointError) as error:
        save_checkpoint(payload(), path)
    assert str(error.value) == (f"could not write {path}: the disk is full; last.pt keeps its "
                                "previous content (the last good checkpoint)")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]

