"""Server processes on loopback ports, for the benchmarks that go through real servers (e2e.py, load.py) and for the
tests that do (tests/test_asgi_server.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process listening on ``port``, its output in ``log``.

    It runs in a process group of its own, so that Ctrl-C reaches only the benchmark, which stops it in order, and
    so that ``stop()`` can kill its workers too if it does not stop by itself.
    """

    def __init__(
        self, name: str, port: int, command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.port = port
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    @classmethod
    def listening(
        cls, name: str, command: Callable[[int], list[str]], env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> Server:
        """``command(port)`` started on a free port, once it accepts connections.

        Another process may take the port between our look and the server's bind: the server then exits, and it is
        started again on another port, up to three times.
        """
        for _attempt in range(3):
            port = free_port()
            server = cls(name, port, command(port), env, log, cwd)
            if server.wait_listening(timeout=30):
                return server
            server.stop()
        raise RuntimeError(f"{name} did not start:\n{server.log_tail()}")

    def wait_listening(self, timeout: float) -> bool:
        """Whether the server accepts connections within ``timeout`` seconds (``False`` once it exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

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


class Relay:
    """A TCP relay from a loopback port of its own to ``target``: what a network between some processes and a server
    is. ``cut()`` drops the connections and refuses new ones, as a partition of the processes that reach the server
    through it would; ``heal()`` lets them through again. Its threads are daemons: it ends with its process."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.heal()

    def heal(self) -> None:
        if self._listener is None:
            self._listener = socket.create_server(("127.0.0.1", self.port))
            threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread waiting in accept(); close() alone would not.
            _close(listener)
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            _close(connection)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._connections += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
