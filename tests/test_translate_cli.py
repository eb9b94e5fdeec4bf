"""scripts/translate.py as a user runs it: arguments, stdin (streamed), files, n-best, attention,
and one-line errors for bad checkpoints and bad input. Where stdin stays open, a signal comes or
stdin is closed, the command runs in its own process; elsewhere in this one (`run_command`)."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
from commands import command_env

from seq2seq.checkpoint import load_checkpoint
from seq2seq.cli.translate import main
from seq2seq.inference.translator import Translator

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "translate.py"
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau singt."]


def start_interactive(checkpoint: Path, *args: str) -> subprocess.Popen:
    """translate.py reading stdin, with every pipe open: for tests that talk to it line by line."""
    return subprocess.Popen([sys.executable, str(SCRIPT), "--checkpoint", str(checkpoint), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=command_env(OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def translator(trained_checkpoint) -> Translator:
    torch.set_num_threads(1)
    return Translator.from_checkpoint(trained_checkpoint, device="cpu")


def test_sentences_as_arguments_give_one_translation_per_line(trained_checkpoint, translator,
                                                             run_command):
    done = run_command("translate", ["--checkpoint", str(trained_checkpoint), "--beam", "2",
                                     *SENTENCES])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == [
        *translator.translate(SENTENCES, translator.settings(beam_size=2)), ""]


def test_stdin_lines_give_as_many_output_lines_empty_for_empty(trained_checkpoint, translator,
                                                               run_command):
    done = run_command("translate", ["--checkpoint", str(trained_checkpoint)], stdin=b"a\n\nb\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert len(lines) == 4 and lines[3] == ""  # three lines, each ended by a newline
    assert lines[1] == "" and lines[:3] == translator.translate(["a", "", "b"])


def test_stdin_is_streamed_a_translation_comes_back_before_the_input_ends(trained_checkpoint):
    process = start_interactive(trained_checkpoint)
    try:
        process.stdin.write(f"{SENTENCES[0]}\n".encode())
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], 120)  # the model loads meanwhile
        assert ready, "no translation within 120 s while stdin was still open"
        first = process.stdout.readline()
        assert first.endswith(b"\n") and process.poll() is None  # still waiting for input
        process.stdin.write(f"{SENTENCES[1]}\n".encode())
        process.stdin.close()
        rest = process.stdout.read()
        assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    finally:
        process.kill()
        process.wait()
    assert rest.count(b"\n") == 1


def test_sigterm_mid_run_keeps_the_old_output_and_leaves_no_temp_file(trained_checkpoint,
                                                                      tmp_path):
    output = tmp_path / "out.en"
    output.write_text("the previous translation\n")
    process = start_interactive(trained_checkpoint, "--output", str(output), "--show-attention")
    try:
        process.stdin.write(f"{SENTENCES[0]}\n".encode())
        process.stdin.flush()
        ready, _, _ = select.select([process.stderr], [], [], 120)  # one sentence translated
        assert ready and process.stderr.readline().startswith(b"[0] ")
        assert [p.name for p in tmp_path.glob(".out.en.*.part")]  # written as it goes
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.wait()
    assert b"terminated" in process.stderr.read()
    assert output.read_text() == "the previous translation\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.en"]


def test_file_to_file_keeps_every_line_and_leaves_no_temp_file(trained_checkpoint, translator,
                                                                tmp_path, run_command):
    max_len = translator.config.data.max_len
    lines = [SENTENCES[0], "", SENTENCES[1], " ".join(["Ein Hund läuft."] * max_len), "   "]
    source = tmp_path / "in.de"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = tmp_path / "out" / "out.en"
    _, out, err = run_command("translate", ["--checkpoint", str(trained_checkpoint),
                                            "--input", str(source), "--output", str(target)])
    written = target.read_text(encoding="utf-8").split("\n")
    assert written == [*translator.translate(lines), ""]
    assert written[1] == "" and written[3] != "" and written[4] == ""
    assert out == "" and "warning: line 4 has" in err
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.en"]


def test_a_full_disk_names_the_output(trained_checkpoint, capsys):
    """It once said only "No space left on device" (/dev/full: every write finds a full disk)."""
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(trained_checkpoint), "--output", "/dev/full", SENTENCES[0]])
    assert stop.value.code == 1
    assert capsys.readouterr().err == "error: could not write /dev/full: the disk is full\n"


def test_nbest_writes_k_tsv_rows_per_input_line(trained_checkpoint, run_command):
    _, out, _ = run_command("translate", ["--checkpoint", str(trained_checkpoint), "--beam", "4",
                                          "--nbest", "3"],
                            stdin=f"{SENTENCES[0]}\n\n{SENTENCES[1]}\n".encode())
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 9 and all(len(row) == 4 for row in rows)
    assert [(int(i), int(rank)) for i, rank, _, _ in rows] == [
        (i, rank) for i in range(3) for rank in (1, 2, 3)]
    for i in (0, 2):
        scores = [float(score) for index, _, score, _ in rows if int(index) == i]
        assert scores == sorted(scores, reverse=True) and max(scores) < 0
    assert [row[2:] for row in rows[3:6]] == [["0.0000", ""], ["-inf", ""], ["-inf", ""]]


def test_plot_and_show_attention(trained_checkpoint, tmp_path, run_command):
    plots = tmp_path / "plots"
    _, out, err = run_command("translate", ["--checkpoint", str(trained_checkpoint),
                                            "--plot-attention", str(plots), "--show-attention",
                                            SENTENCES[0], "", SENTENCES[2]])
    assert len(out.splitlines()) == 3  # stdout holds only the translations
    assert sorted(p.name for p in plots.iterdir()) == ["0000.png", "0002.png"]
    for path in plots.iterdir():
        assert matplotlib.image.imread(path).ndim == 3
    shown = [line for line in err.splitlines() if line.startswith("[")]
    assert shown[0].startswith("[0] ") and shown[1] == "[1] (empty)"
    assert shown[2].startswith("[2] ") and shown[2].endswith(tuple("0123456789"))
    assert "→" in shown[0] and "</s>→" in shown[0]


def test_invalid_utf8_on_stdin_names_the_line_and_exits_while_stdin_is_open(trained_checkpoint):
    process = start_interactive(trained_checkpoint)
    try:
        process.stdin.write(b"gut\nschl\xe4ft\n")
        process.stdin.flush()  # and keep it open: the reader thread is waiting for more
        returncode = process.wait(timeout=120)
        stderr = process.stderr.read().decode()
    finally:
        process.kill()
        process.wait()
    assert returncode == 1 and "Traceback" not in stderr and "Fatal" not in stderr
    assert stderr.startswith("error: stdin, line 2: invalid UTF-8")


def _checkpoint_with_code(path: Path, marker: Path) -> None:
    class RunsCode:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"format_version": 1, "model": RunsCode(), "config": {}, "tokenizer": {}}, path)


@pytest.mark.parametrize("case, message", [
    ("missing", "checkpoint not found"),
    ("not_a_checkpoint", "not a readable checkpoint"),
    ("other_version", "format version 99"),
    ("code", "refused by the weights-only loader"),
])
def test_bad_checkpoints_are_one_line_errors(case, message, trained_checkpoint, tmp_path,
                                             run_command):
    path, marker = tmp_path / "model.pt", tmp_path / "code-ran"
    if case == "not_a_checkpoint":
        path.write_text("Ein Mann fährt Fahrrad.\n")
    elif case == "other_version":
        payload = load_checkpoint(trained_checkpoint)
        payload["format_version"] = 99
        torch.save(payload, path)
    elif case == "code":
        _checkpoint_with_code(path, marker)
    done = run_command("translate", ["--checkpoint", str(path), SENTENCES[0]])
    stderr = done.stderr
    assert done.returncode == 1 and done.stdout == ""
    assert stderr.startswith("error: ") and message in stderr and "Traceback" not in stderr
    assert not marker.exists()


@pytest.mark.parametrize("case, message", [
    ("nan", "tensor decoder.output_layer.bias holds NaN or infinite weights"),
    ("config", "is not a seq2seq checkpoint: its config is of type str, not a dict of settings"),
])
def test_broken_checkpoints_translate_nothing(case, message, trained_checkpoint, tmp_path,
                                              capsys):
    """NaN weights once gave empty lines with exit code 0; a str config a traceback."""
    payload = load_checkpoint(trained_checkpoint)
    if case == "nan":
        payload["model"]["decoder.output_layer.bias"].fill_(float("nan"))
    else:
        payload["config"] = "model: {hidden_size: 32}"
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(tmp_path / "broken.pt"), SENTENCES[0]])
    out, err = capsys.readouterr()
    assert stop.value.code == 1 and out == ""
    assert err.startswith(f"error: {tmp_path / 'broken.pt'}") and message in err
    assert err.count("\n") == 1


def test_a_run_with_only_last_pt_translates_with_a_notice(trained_checkpoint, tmp_path,
                                                          run_command):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_checkpoint / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    done = run_command("translate", ["--checkpoint", str(run), SENTENCES[0]])
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1
    assert "warning: no best.pt in" in done.stderr and "last.pt" in done.stderr


def test_a_closed_stdin_is_one_line_before_the_model_loads():
    done = subprocess.run([sys.executable, str(SCRIPT), "--checkpoint", "/nonexistent"],
                          preexec_fn=lambda: os.close(0), capture_output=True, text=True,
                          env=command_env(), timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == ("error: nothing to translate: stdin is closed; give sentences as "
                           "arguments, --input FILE, or lines on stdin\n")


def test_conflicting_options_are_usage_errors(trained_checkpoint, capsys):
    for args in (["--nbest", "3", "--beam", "2"], ["--input", "x.de", "Ein Satz."],
                 ["--beam", "0"]):
        with pytest.raises(SystemExit) as stop:
            main(["--checkpoint", str(trained_checkpoint), *args])
        assert stop.value.code == 2
    assert "--nbest 3 needs --beam 3 or more" in capsys.readouterr().err


def test_an_output_that_would_replace_the_input_is_a_usage_error(trained_checkpoint, tmp_path,
                                                                  capsys):
    """`--input X --output X` once replaced the sentences by their translations."""
    source = tmp_path / "x.de"
    source.write_text("Ein Satz.\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(trained_checkpoint), "--input", str(source),
              "--output", str(tmp_path / "." / "x.de")])
    assert stop.value.code == 2
    assert "--input and --output name the same file" in capsys.readouterr().err
    assert source.read_text(encoding="utf-8") == "Ein Satz.\n"


@pytest.mark.parametrize("args,words", [
    (["--max-len-ratio", "inf"], ["--max-len-ratio", "inf"]),
    (["--max-len-ratio", "1e30"], ["--max-len-ratio", "(0, 100]"]),
    (["--max-len-ratio", "nan"], ["--max-len-ratio"]),
    (["--length-penalty", "nan"], ["--length-penalty", "[0, 10]"]),
    (["--length-penalty", "-1"], ["--length-penalty", "[0, 10]"]),
    (["--length-penalty", "1e308"], ["--length-penalty", "[0, 10]"]),
    # once an allocation traceback, minutes of search, and a segfault (rc 139)
    (["--beam", "10000000"], ["--beam: must be in [1, 100], got 10000000"]),
    (["--beam", "100000"], ["--beam: must be in [1, 100], got 100000"]),
    (["--threads", "100000"], ["--threads: must be in [1, ", "got 100000 (at most 4 per core"]),
])
def test_numeric_options_must_be_finite_and_in_range(trained_checkpoint, capsys, args, words):
    """These once gave empty translations for every line, with exit code 0."""
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(trained_checkpoint), *args, "Ein Satz."])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


@pytest.mark.parametrize("option,target,words", [
    ("--output", "{tmp}", ["--output", "is a directory"]),
    ("--output", "{tmp}/file/out.en", ["--output", "is a file"]),
    ("--plot-attention", "{tmp}/file", ["--plot-attention", "is a file"]),
])
def test_an_output_that_cannot_be_written_is_one_line_before_loading(tmp_path, option, target,
                                                                     words, run_command):
    (tmp_path / "file").write_text("x")
    done = run_command("translate", ["--checkpoint", str(tmp_path / "no_such_run"),
                                     option, target.format(tmp=tmp_path), "Ein Satz."])
    stderr = done.stderr
    assert done.returncode == 1 and stderr.count("\n") == 1, stderr
    for word in words:
        assert word in stderr

