"""What tests that run a command share: the environment of one started in a process of its
own, and `Done`, what one run in the test's process (conftest's `run_command`) left.

Most tests run a command in the test's own process (conftest's `run_command`): a new Python
costs 3-5 s of imports. A real process is for what its boundary changes: signals, stdin that
stays open, the interpreter's exit, the installed console scripts, torchrun, a sweep's launcher,
the server.
"""

from __future__ import annotations

import os
from typing import NamedTuple

# Each command looks at the CPU for 0.5 s before it imports torch, to choose how OpenMP's idle
# threads wait (seq2seq.cli.common.choose_omp_wait_policy), unless the wait policy is set. Tests
# run tiny models on one thread, with the other xdist worker busy beside them: what the look
# would choose there is PASSIVE.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


class Done(NamedTuple):
    """What a command that conftest's `run_command` ran left, as subprocess.run(..., text=True)
    tells it of a command in its own process."""

    returncode: int
    stdout: str
    stderr: str


def command_env(**settings: str) -> dict[str, str]:
    """This process's environment, for a command a test starts, with `settings` added.

    It sets OpenMP's wait policy (WAIT_POLICY) where the tester has not, so the command skips
    its look at the CPU; the tests of that look leave it out. HYDRA_FULL_ERROR is dropped: with
    it, Hydra prints the tracebacks that the tests of one-line errors refuse.
    """
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & env.keys():
        env.update(WAIT_POLICY)
    return {**env, **settings}
