"""A normal (not editable) install: the configs ship inside the package, so the console scripts
work from any directory, as a user who ran `pip install .` meets them."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from commands import command_env
from server_process import ServerProcess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command[0]}: {done.stderr[-3000:]}"
    return done


def test_a_wheel_trains_translates_reports_and_serves_from_another_directory(tiny_run, tmp_path):
    wheel_dir, site, work = tmp_path / "wheel", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    env = command_env(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(REPO)],
        cwd=tmp_path, env=env)
    (wheel,) = wheel_dir.glob("seq2seq-*.whl")
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)], cwd=tmp_path, env=env)
    # the installed copy is the one that runs, not this checkout
    where = run([sys.executable, "-c", "import seq2seq; print(seq2seq.__file__)"], work, env)
    assert where.stdout.startswith(str(site))
    # every config file ships (pyproject.toml lists the conf/ group folders by hand)
    shipped = sorted(p.relative_to(site / "seq2seq" / "conf") for p in
                     (site / "seq2seq" / "conf").rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml"))

    bin_dir = site / "bin"
    run([str(bin_dir / "seq2seq-train"), *tiny_run, "train.max_steps=10", "train.eval_every=10",
         f"hydra.run.dir={work / 'runs' / 'x'}"], cwd=work, env=env)
    translated = run([str(bin_dir / "seq2seq-translate"), "--checkpoint", str(work / "runs" / "x"),
                      "Ein Hund."], cwd=work, env=env)
    assert len(translated.stdout.splitlines()) == 1
    report = run([str(bin_dir / "seq2seq-report"), str(work / "runs")], cwd=work, env=env)
    assert (work / "runs" / "report.md").is_file() and "wrote" in report.stdout
    serve = ServerProcess(["--checkpoint", str(work / "runs" / "x")], tmp_path / "serve.log",
                          env=env, command=[str(bin_dir / "seq2seq-serve")])
    with serve as server, urllib.request.urlopen(server.url, timeout=60) as page:
        assert b'id="heatmap"' in page.read()  # the page ships in the wheel
