"""The serve command (or TensorBoard) run in the background on loopback, and clients for it:
what the load test, the README screenshots and the end-to-end tests share.

`ServerProcess` starts `python -m seq2seq.cli.serve` on a free port, waits until GET /health
answers (failing with the server's log if it exits or hangs first) and stops it with SIGTERM;
`tensorboard_process` does the same for TensorBoard on a log dir.
The server's stderr goes to a file, not a pipe: uvicorn logs every request, and a pipe that
nobody reads fills up and blocks the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from seq2seq.cli.common import checked
from seq2seq.config import Range

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

VIEWPORT_PX = Range(200, 8000)  # a browser window's width or height, in CSS px
DEVICE_SCALE = Range(0.5, 4.0)  # device pixels per CSS px


def viewport(text: str) -> tuple[int, int]:
    """An argparse type: `WxH` in CSS px, such as 1400x1200."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 1400x1200, got {text!r}") \
            from None
    for value in (width, height):
        if why := VIEWPORT_PX.refusal(value):
            raise argparse.ArgumentTypeError(f"{text}: {why}")
    return width, height


def device_scale(text: str) -> float:
    """An argparse type: the device pixel ratio."""
    return checked(text, float, DEVICE_SCALE.refusal)


CHROMIUM_HINT = ("install Debian's chromium and chromium-driver "
                 "(apt-get install chromium chromium-driver; .ci/run does)")


class ServerError(RuntimeError):
    """The server exited or did not become healthy; the message holds its log."""


def free_port() -> int:
    """A loopback port nothing listens on now (another process could take it before the server
    binds it: unlikely enough for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request_json(url: str, body: dict[str, Any] | None = None,
                 timeout: float = 60) -> dict[str, Any]:
    """GET `url`, or POST `body` as JSON to it; the decoded JSON answer (HTTPError on 4xx/5xx)."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


class ServerProcess:
    """`with ServerProcess(["--checkpoint", RUN], log) as server:` a healthy server at
    `server.url`, stopped (SIGTERM, then kill if it hangs) on leaving."""

    def __init__(self, args: Sequence[str], log: Path, startup_timeout_s: float = 120,
                 threads: int | None = None, env: dict[str, str] | None = None,
                 command: Sequence[str] = (sys.executable, "-m", "seq2seq.cli.serve"),
                 health_path: str = "/health") -> None:
        """`command` runs the server (e.g. an installed `seq2seq-serve`), with `args` and
        loopback host and port options; `threads` sets OMP_NUM_THREADS in its environment;
        GET `health_path` answers JSON once it is ready."""
        self.command, self.args, self.log = list(command), list(args), log
        self.health_path = health_path
        self.startup_timeout_s = startup_timeout_s
        self.env = {**(os.environ if env is None else env),
                    **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with open(self.log, "wb") as sink:
            self.process = subprocess.Popen(
                [*self.command, *self.args,
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink, env=self.env)
        try:
            self.wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def wait_until_healthy(self) -> None:
        """Poll GET health_path; the pause between polls is a wait on the process, so a server
        that dies is noticed at once."""
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            try:
                request_json(f"{self.url}{self.health_path}", timeout=5)
                return
            except (urllib.error.URLError, ConnectionError):
                pass  # not listening yet
            try:
                self.process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
            raise ServerError(f"the server exited with {self.process.returncode}:\n"
                              f"{self.output()}")
        raise ServerError(f"GET {self.health_path} did not answer within "
                          f"{self.startup_timeout_s:g} s:\n{self.output()}")

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (the server finishes what is in flight, then exits), then wait; kill if it
        hangs. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def memory_mb(self) -> tuple[float, float]:
        """The server's resident memory now and at its peak (VmRSS, VmHWM), in MB."""
        assert self.process is not None
        fields = dict(line.split(":", 1) for line in
                      Path(f"/proc/{self.process.pid}/status").read_text().splitlines())
        return tuple(int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))


def tensorboard_process(logdir: Path, log: Path) -> ServerProcess:
    """TensorBoard on `logdir`, ready once its environment answers (it reads the event files
    after that: wait for what the page should show)."""
    return ServerProcess(["--logdir", str(logdir)], log,
                         command=(sys.executable, "-m", "tensorboard.main"),
                         health_path="/data/environment")


def headless_chromium(width: int = 1200, height: int = 900, scale: float = 1.0) -> WebDriver:
    """Debian's headless Chromium through Debian's chromedriver (both paths given, so Selenium
    Manager never tries to download anything), with an exact viewport: --window-size sets the
    window, whose viewport is smaller, so the viewport is set through DevTools."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        missing = " and ".join(name for name, path in
                               [("chromium", chromium), ("chromedriver", chromedriver)] if not path)
        raise ServerError(f"{missing} not found: {CHROMIUM_HINT}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: Chromium refuses to run as root (CI) with its sandbox on.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--hide-scrollbars", f"--window-size={width},{height}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": scale,
                            "mobile": False})
    return driver
