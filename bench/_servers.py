"""Server processes on loopback ports for the benchmarks that go through real servers (e2e.py, load.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One server process listening on ``port``, its output in ``log``.

    It runs in a process group of its own, so that Ctrl-C reaches only the benchmark, which stops it in order, and
    so that ``stop()`` can kill its workers too if it does not stop by itself.
    """

    def __init__(self, name: str, port: int, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = port
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_answer(self, path: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, str]:
        """The status and body of the first answer to a GET of ``path``, whatever its status."""
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(self.url(path), headers=headers or {})
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: no answer in {timeout:.0f} s:\n{self.log_tail()}") from None
                time.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:]) if self.log.exists() else "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
