"""Checkpoint averaging: the mean of one model's weights, as a new checkpoint that translates
like any other; checkpoints of different models are refused with one line."""

from __future__ import annotations

import logging
import shutil
import weakref

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from seq2seq.cli import average
from seq2seq.config import AverageSelect, ConfigError
from seq2seq.errors import CheckpointError
from seq2seq.inference.scores import score
from seq2seq.inference.translator import Translator
from seq2seq.training.averaging import average_payloads, kept_for_averaging

SENTENCES = ["Eine Frau singt.", "Ein Mann läuft vor dem Haus.", ""]


def test_the_average_of_identical_checkpoints_is_that_checkpoint(trained_checkpoint, tmp_path,
                                                                 capsys):
    best = trained_checkpoint / "checkpoints" / "best.pt"
    shutil.copy(best, tmp_path / "copy.pt")
    average.main([str(best), str(tmp_path / "copy.pt"), "--output", str(tmp_path / "avg.pt")])
    assert "averaged 2 checkpoints" in capsys.readouterr().out
    averaged, original = load_checkpoint(tmp_path / "avg.pt"), load_checkpoint(best)
    for name, tensor in original["model"].items():
        assert torch.equal(averaged["model"][name], tensor), name
    assert averaged["config"] == original["config"]
    assert "optimizer" not in averaged
    settings = dict(beam_size=2)
    from_average = Translator.from_checkpoint(tmp_path / "avg.pt", device="cpu")
    from_best = Translator.from_checkpoint(best, device="cpu")
    assert from_average.translate(SENTENCES, from_average.settings(**settings)) == \
        from_best.translate(SENTENCES, from_best.settings(**settings))


def test_weights_are_averaged_element_wise(trained_checkpoint):
    first = load_checkpoint(trained_checkpoint)
    second = load_checkpoint(trained_checkpoint)
    second["model"] = {name: tensor + 1.0 if tensor.is_floating_point() else tensor
                       for name, tensor in second["model"].items()}
    second["state"]["step"] = 99
    averaged = average_payloads([first, second], ["a", "b"])
    for name, tensor in first["model"].items():
        if tensor.is_floating_point():
            torch.testing.assert_close(averaged["model"][name], tensor + 0.5)
        else:  # the output layer's ids: the pieces it scores, the same in both
            assert torch.equal(averaged["model"][name], tensor), name
    assert "decoder.output_layer.ids" in first["model"]
    assert averaged["state"]["averaged_steps"] == [first["state"]["step"], 99]


def test_checkpoints_scoring_other_pieces_are_not_averaged(trained_checkpoint):
    first, second = load_checkpoint(trained_checkpoint), load_checkpoint(trained_checkpoint)
    ids = second["model"]["decoder.output_layer.ids"]
    ids[-1] += 1  # the same shape: another run's data would give other pieces
    with pytest.raises(CheckpointError, match="differ in decoder.output_layer.ids"):
        average_payloads([first, second], ["a", "b"])


class Payload(dict):
    """A checkpoint payload that a weak reference can watch."""


def test_one_checkpoint_at_a_time_is_held(trained_checkpoint):
    """Averaging K checkpoints holds one of them beside the sums, not K (a generator's next
    checkpoint loads after the previous one is dropped)."""
    plain = load_checkpoint(trained_checkpoint)
    alive = []

    def load(step: int) -> Payload:
        assert all(ref() is None for ref in alive), "a previous checkpoint is still held"
        payload = Payload(load_checkpoint(trained_checkpoint))
        payload["model"] = {name: t + step if t.is_floating_point() else t
                            for name, t in payload["model"].items()}
        alive.append(weakref.ref(payload))
        return payload

    averaged = average_payloads((load(step) for step in range(4)), list("abcd"))
    for name, tensor in plain["model"].items():
        torch.testing.assert_close(averaged["model"][name],
                                   tensor + 1.5 if tensor.is_floating_point() else tensor)


def mismatched(payload, kind: str):
    if kind == "seed":
        payload["config"]["seed"] += 1
    elif kind == "model":
        payload["config"]["model"]["output_dropout"] = 0.123
    elif kind == "vocabulary":
        payload["tokenizer"] = {"src": b"other", "tgt": b"other"}
    elif kind == "shape":
        name = next(iter(payload["model"]))
        payload["model"][name] = torch.zeros(3)
    return payload


@pytest.mark.parametrize(("kind", "message"), [
    ("seed", "differ in their seed settings"), ("model", "differ in their model settings"),
    ("vocabulary", "different subword models"), ("shape", "differ in the shape of"),
])
def test_checkpoints_of_different_models_are_refused_with_one_line(trained_checkpoint, tmp_path,
                                                                   capsys, kind, message):
    save_checkpoint(mismatched(load_checkpoint(trained_checkpoint), kind), tmp_path / "other.pt")
    with pytest.raises(SystemExit) as stop:
        average.main([str(trained_checkpoint), str(tmp_path / "other.pt"),
                      "--output", str(tmp_path / "avg.pt")])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "only checkpoints of one model (one run) can be averaged" in err
    assert not (tmp_path / "avg.pt").exists()


def refused(args: list[str], capsys) -> str:
    """Run the average command, which must fail in one line; its message."""
    with pytest.raises(SystemExit) as stop:
        average.main(args)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err[len("error: "):-1]


def test_an_average_is_not_averaged_again(trained_checkpoint, tmp_path, capsys):
    """It once gave "averaged 2 checkpoints (steps None, 30)": each checkpoint of the average
    weighed half as much as the raw one beside it."""
    best, last = (trained_checkpoint / "checkpoints" / name for name in ("best.pt", "last.pt"))
    average.main([str(best), str(last), "--output", str(tmp_path / "avg.pt")])
    message = refused([str(tmp_path / "avg.pt"), str(last), "--output",
                       str(tmp_path / "avg2.pt")], capsys)
    assert message == (f"{tmp_path / 'avg.pt'} is itself an average of 2 checkpoints: averaging "
                       "it again would weigh those less than the others; average the checkpoints "
                       "it was made from instead")
    assert not (tmp_path / "avg2.pt").exists()


def test_a_checkpoint_given_twice_is_refused(trained_checkpoint, tmp_path, capsys):
    """It once averaged a checkpoint with itself ("steps 30, 30"), weighing it double."""
    best = trained_checkpoint / "checkpoints" / "best.pt"
    message = refused([str(best), str(trained_checkpoint), str(trained_checkpoint / "checkpoints"
                                                                / "last.pt"),
                       "--output", str(tmp_path / "avg.pt")], capsys)
    assert message == (f"{trained_checkpoint / 'checkpoints' / 'best.pt'} is given twice: it "
                       "would weigh twice as much as the others in the average; give each "
                       "checkpoint once")
    assert not (tmp_path / "avg.pt").exists()


def test_non_finite_weights_are_not_averaged(trained_checkpoint, tmp_path, capsys):
    """They once made a NaN average, with exit code 0."""
    payload = load_checkpoint(trained_checkpoint)
    name = next(iter(payload["model"]))
    payload["model"][name][0] = float("nan")
    save_checkpoint(payload, tmp_path / "nan.pt")
    message = refused([str(trained_checkpoint), str(tmp_path / "nan.pt"), "--output",
                       str(tmp_path / "avg.pt")], capsys)
    assert message.startswith(f"{tmp_path / 'nan.pt'}: tensor {name} holds NaN or infinite")
    assert not (tmp_path / "avg.pt").exists()


def test_an_averaged_checkpoint_cannot_be_resumed(trained_checkpoint, tmp_path, compose,
                                                  tiny_run):
    from seq2seq.training.resume import load_resume_payload

    save_checkpoint(average_payloads([load_checkpoint(trained_checkpoint)], ["a"]),
                    tmp_path / "avg.pt")
    config = compose([*tiny_run, f"train.resume={tmp_path / 'avg.pt'}"])
    with pytest.raises(CheckpointError, match="averaged weights without training state"):
        load_resume_payload(config)


# ---- averaging in training: keep the last or best K evaluations, test their average ----------

@pytest.mark.parametrize(("select", "expected"), [
    (AverageSelect.last, [[3, 12.0], [4, 9.0], [5, 11.0]]),
    (AverageSelect.best, [[1, 10.0], [3, 12.0], [5, 11.0]]),
])
def test_the_last_or_the_best_evaluations_are_kept(select, expected):
    kept: list[list[float]] = []
    for evaluation in ([1, 10.0], [2, 8.0], [3, 12.0], [4, 9.0], [5, 11.0]):
        kept = kept_for_averaging(kept, evaluation, 3, select)
    assert kept == expected


def test_averaging_one_checkpoint_is_refused_at_once(compose, tiny_run):
    with pytest.raises(ConfigError, match=r"train.average_checkpoints=1.*0 \(off\) or an int >= 2"):
        compose([*tiny_run, "train.average_checkpoints=1"])


@pytest.mark.parametrize("select", ["last", "best"])
def test_a_run_tests_the_average_of_its_kept_evaluations(compose, tiny_run, tmp_path, select):
    from seq2seq.training.setup import build_trainer

    cfg = compose([*tiny_run, "train.max_steps=20", "train.eval_every=5", "train.beam_size=3",
                   "train.average_checkpoints=3", f"train.average_select={select}"])
    trainer = build_trainer(cfg, tmp_path)
    results = trainer.fit()
    checkpoints = tmp_path / "checkpoints"
    kept = load_checkpoint(checkpoints / "last.pt")["state"]["kept_evals"]
    steps = [int(step) for step, _ in kept]
    assert sorted(p.name for p in checkpoints.glob("eval-step*.pt")) == sorted(
        f"eval-step{step}.pt" for step in steps)
    if select == "last":
        assert steps == [10, 15, 20]
    averaging = results["averaging"]
    assert averaging["steps"] == steps and averaging["select"] == select
    expected = average_payloads([load_checkpoint(checkpoints / f"eval-step{s}.pt") for s in steps],
                                [str(s) for s in steps])
    averaged = load_checkpoint(checkpoints / "averaged.pt")
    for name, tensor in expected["model"].items():
        assert torch.equal(averaged["model"][name], tensor)
    # both are validated as the final model decodes: with the test's beam, not greedy
    valid = trainer.data.valid
    for name, scored in (("best.pt", averaging["single"]), ("averaged.pt", averaging)):
        translator = Translator.from_checkpoint(checkpoints / name, device="cpu")
        hypotheses = translator.translate(valid.src, translator.settings(beam_size=3))
        assert scored["valid"] == {"bleu": score(hypotheses, valid.ref).bleu, "beam_size": 3}
    final = averaging if averaging["final"] else averaging["single"]
    assert averaging["final"] == (averaging["valid"]["bleu"] > averaging["single"]["valid"]["bleu"])
    assert results["test"]["bleu"] == final["test"]["bleu"]
    assert results["valid"]["bleu"] == final["valid"]["bleu"]
    # the run dir stands for its final model, whose scores results.json gives
    assert resolve_checkpoint(tmp_path).name == ("averaged.pt" if averaging["final"] else "best.pt")


def test_a_run_with_one_evaluation_says_why_it_has_no_average_and_keeps_no_stray_weights(
        compose, tiny_run, tmp_path, caplog):
    from seq2seq.training.setup import build_trainer

    cfg = compose([*tiny_run, "train.max_steps=4", "train.eval_every=4",
                   "train.average_checkpoints=2"])
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        results = build_trainer(cfg, tmp_path).fit()
    assert results["averaging"] is None
    assert [r.getMessage() for r in caplog.records if "no checkpoint average" in r.getMessage()] \
        == ["no checkpoint average: train.average_checkpoints=2 needs 2 evaluations, the run "
            "made 1; evaluate more often (train.eval_every) to average"]
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.pt", "last.pt"]
    assert load_checkpoint(checkpoints / "last.pt")["state"]["kept_evals"] == []
