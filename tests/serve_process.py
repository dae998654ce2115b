"""A real `splade-os serve` process (uvicorn) for the serve tests: started on a free port, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from conftest import BUNDLED_MODEL, REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    url: str
    process: subprocess.Popen[str]
    log: Path
    key: str | None = None

    def headers(self, key: str | None = None) -> dict[str, str]:
        key = key or self.key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def post(
        self, path: str, body: Any = None, *, data: bytes | None = None, key: str | None = None, **kwargs: Any
    ) -> requests.Response:
        if data is None:
            return requests.post(self.url + path, json=body, headers=self.headers(key), timeout=60, **kwargs)
        headers = {"Content-Type": "application/json", **self.headers(key)}
        return requests.post(self.url + path, data=data, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, *, key: str | None = None) -> requests.Response:
        return requests.get(self.url + path, headers=self.headers(key), timeout=60)

    def stop(self) -> int:
        """SIGTERM, as a process manager stops it; the exit code once it has shut down gracefully."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def running_service(
    tmp: Path, *args: str, env: Mapping[str, str] | None = None, key: str | None = None
) -> Iterator[Service]:
    """`splade-os serve --model models/splade-tiny ARGS` until the block ends; waits until /health answers."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    command = [sys.executable, "-m", "splade_os", "serve", "--model", str(BUNDLED_MODEL), "--port", str(port), *args]
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, text=True, env=environment, cwd=REPO)
    service = Service(f"http://127.0.0.1:{port}", process, log, key)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise AssertionError(f"splade-os serve exited with {process.returncode}:\n{service.output()}")
            try:
                requests.get(service.url + "/health", timeout=30)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"splade-os serve did not answer in 90 s:\n{service.output()}") from None
                time.sleep(0.2)
        yield service
    finally:
        if process.poll() is None:
            service.stop()
