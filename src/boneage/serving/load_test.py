"""A bounded load test against a server: N requests from C concurrent clients, and the
server started in its own process for it (as `make bench` and the tests do)."""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx


async def _load(url: str, image: bytes, fields: dict[str, str], requests: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    remaining = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for _ in remaining:  # the clients share one count: the test stops by itself
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/predict", files={"file": ("image.png", image)}, data=fields)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(repr(error))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_ms": round(1000 * quantiles[49], 1),
        "p95_ms": round(1000 * quantiles[94], 1),
        "requests_per_s": round(requests / seconds, 1),
    }


def load_test(url: str, image: bytes, fields: dict[str, str] | None = None, requests: int = 200,
              concurrency: int = 8) -> dict[str, Any]:  # fmt: skip
    """p50/p95 latency, throughput and the errors of `requests` POST /predict calls."""
    return asyncio.run(_load(url.rstrip("/"), image, fields or {}, requests, concurrency))


class Server(NamedTuple):
    url: str
    pid: int  # the server's process, for what a client cannot see (its memory)


@contextmanager
def served(
    overrides: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 120
) -> Iterator[Server]:
    """`python -m boneage.serve OVERRIDES` on a free port of 127.0.0.1; yields its URL and process
    once it answers /health, and stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "boneage.serve", *overrides, f"port={port}", "log_level=warning"]
    process = subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/health", process, timeout_s)
        yield Server(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_answering(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Returns once `url` answers 200. If `process` (the server, its stderr piped) ends first or
    `timeout_s` passes, raises with the end of what the server wrote."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()  # its output ends, so reading it cannot block
            raise RuntimeError(f"{url} did not answer: {process.stderr.read()[-2000:]}")
        time.sleep(0.3)


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
