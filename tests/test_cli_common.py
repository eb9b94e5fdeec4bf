"""What every command shares: the OpenMP wait policy chosen from how busy the CPU is."""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from seq2seq.cli import common
from seq2seq.config import CPU_THREADS, THREADS_PER_CORE
from seq2seq.errors import ConfigError


@pytest.fixture
def no_omp_env(monkeypatch):
    """A process that has not chosen yet, with no setting of the user's."""
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(key, raising=False)
    common.choose_omp_wait_policy.cache_clear()
    yield
    common.choose_omp_wait_policy.cache_clear()


def busy(monkeypatch, cores: float) -> list[float]:
    """Other processes use `cores`; returns the lengths of the looks taken."""
    looks: list[float] = []
    monkeypatch.setattr(common, "other_busy_cores", lambda seconds: looks.append(seconds) or cores)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return looks


def test_threads_sleep_when_other_work_holds_a_core(no_omp_env, monkeypatch):
    busy(monkeypatch, 1.04)
    assert common.choose_omp_wait_policy() == ("idle CPU threads will sleep, because other "
                                               "processes use 1.0 of this machine's 2 cores")
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ


def test_threads_spin_briefly_on_an_idle_cpu(no_omp_env, monkeypatch):
    busy(monkeypatch, 0.1)
    assert common.choose_omp_wait_policy() == ("idle CPU threads will spin briefly, because "
                                               "other processes use 0.1 of this machine's 2 cores")
    assert os.environ["GOMP_SPINCOUNT"] == common.SHORT_SPIN
    assert "OMP_WAIT_POLICY" not in os.environ


def test_the_cpu_is_watched_for_half_a_second_once_per_process(no_omp_env, monkeypatch):
    looks = busy(monkeypatch, 1.0)
    first = common.choose_omp_wait_policy()
    assert common.choose_omp_wait_policy() == first  # what train() logs: main()'s choice
    assert looks == [common.LOOK_SECONDS] and common.LOOK_SECONDS >= 0.5


@pytest.mark.parametrize("key,value", [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "5")])
def test_the_users_setting_wins(no_omp_env, monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    busy(monkeypatch, 2.0)
    assert common.choose_omp_wait_policy() == f"idle CPU threads wait as your {key}={value} says"
    assert os.environ[key] == value


def test_the_train_commands_config_check_caps_threads_at_this_machines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    too_many = CPU_THREADS.high + 1
    with pytest.raises(ConfigError) as error:
        common.check_overrides([f"train.num_threads={too_many:g}"])
    assert str(error.value) == (f"train.num_threads must be in {CPU_THREADS}, got {too_many:g} "
                                f"(at most {THREADS_PER_CORE} per core of this machine)")


def test_busy_cores_are_measured_between_zero_and_all_cores():
    assert 0.0 <= common.other_busy_cores(0.05) <= (os.cpu_count() or 1)


@pytest.mark.parametrize("command", ["average", "distill", "evaluate", "report", "serve",
                                     "translate"])
@pytest.mark.parametrize("typed", ["/venv/bin/seq2seq-{}", "scripts/{}.py"])
def test_usage_names_the_command_as_the_user_typed_it(command, typed, monkeypatch, capsys):
    main = entry_points(group="console_scripts")[f"seq2seq-{command}"].load()
    monkeypatch.setattr(sys, "argv", [typed.format(command), "--help"])
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {Path(typed.format(command)).name} ")
