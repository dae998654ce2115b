"""Dynamic batching against one encoder run per request: `splade-os serve` beside a naive endpoint, same run.

    python benchmarks/serve.py [--model models/splade-tiny] [--clients 1,8,32,128] [--seconds 4] [--rounds 3]

Two services run as separate uvicorn processes on this machine, taking turns, with the same encoder
settings: `splade-os serve` (dynamic batching at its defaults) and a naive Starlette endpoint that runs
`SpladeEncoder.encode_queries([text])` once per request on Starlette's worker threads (what an application without
batching does). C asyncio clients (aiohttp, in this process) each send `POST /encode` with one query, the next as
soon as the answer is back, for `--seconds` after a one-second warm-up, `--rounds` times per service and client
count (the median round is reported). Queries are the demo corpus's titles
and opening sentences, short as queries are. Every answer is checked against encoding the text alone; the run exits
1 on any mismatch or error. Printed: queries per second, p50 and p99 latency and the service process's CPU time per
query (read from /proc: what the machine's other load changes least) per service and client count, and the
batching service's throughput as a multiple of the naive one's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from concurrency import Run as ConcurrencyRun

REPO = Path(__file__).resolve().parents[1]


def naive_app(model: str) -> object:
    """One encoder run per request, on Starlette's worker threads."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from splade_os.model.encoder import SpladeEncoder

    encoder = SpladeEncoder(model)

    async def encode(request: Request) -> JSONResponse:
        texts = (await request.json())["texts"]
        vectors = await run_in_threadpool(encoder.encode_queries, texts)
        return JSONResponse({"kind": "query", "vectors": [v.to_dict() for v in vectors]})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/encode", encode, methods=["POST"]), Route("/health", health)])


def queries() -> list[str]:
    lines = (REPO / "examples" / "demo-corpus.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines if line.strip()]
    return [d["title"] for d in docs] + [d["text"].split(". ")[0][:120] for d in docs]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and all its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def service(kind: str, model: str) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if kind == "batched":
        command = [
            sys.executable,
            "-m",
            "splade_os",
            "serve",
            "--model",
            model,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    else:
        command = [sys.executable, __file__, "--naive-server", str(port), "--model", model]
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url + "/health", timeout=5)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the {kind} service did not start") from None
                time.sleep(0.2)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@dataclass
class Run(ConcurrencyRun):
    cpu: float = 0.0  # the service's CPU seconds while measured

    @property
    def cpu_ms(self) -> float:
        """The service's CPU time per query: what the machine's other load does not change much."""
        return 1000 * self.cpu / max(1, len(self.latencies))

    def percentile(self, q: float) -> float:
        return 1000 * self.pct(100 * q)


async def load(
    url: str, pid: int, kind: str, clients: int, seconds: float, texts: list[str], expected: dict[str, dict]
) -> Run:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(offset: int, until: float, keep: bool) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < until:
                text = texts[i % len(texts)]
                i += 1
                started = time.perf_counter()
                async with session.post(url + "/encode", json={"texts": [text]}) as response:
                    body = await response.json()
                if response.status != 200 or body["vectors"][0] != expected[text]:
                    errors += 1
                elif keep:
                    latencies.append(time.perf_counter() - started)

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(client(c * 7, warm, False) for c in range(clients)))
        start, cpu = time.perf_counter(), cpu_seconds(pid)
        await asyncio.gather(*(client(c * 7, start + seconds, True) for c in range(clients)))
        elapsed, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu
    return Run(kind, clients, elapsed, latencies, errors, 0, cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "models" / "splade-tiny"))
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per service and client count")
    parser.add_argument("--naive-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        import uvicorn

        uvicorn.run(naive_app(args.model), host="127.0.0.1", port=args.naive_server, log_level="warning")  # type: ignore[arg-type]
        return 0

    from splade_os.model.encoder import SpladeEncoder

    texts = queries()
    with SpladeEncoder(args.model) as encoder:
        expected = {t: encoder.encode_queries([t])[0].to_dict() for t in texts}
    counts = [int(c) for c in args.clients.split(",")]
    rounds: dict[tuple[str, int], list[Run]] = {}
    # Both services stay up (the idle one costs nothing) and take turns, the order alternating each round, so a
    # change in the machine's load during the run falls on both alike; each figure is the median round.
    with service("naive", args.model) as naive_at, service("batched", args.model) as batched_at:
        urls = {"naive": naive_at, "batched": batched_at}
        for clients in counts:
            for r in range(args.rounds):
                for kind in ("naive", "batched") if r % 2 == 0 else ("batched", "naive"):
                    run = asyncio.run(load(*urls[kind], kind, clients, args.seconds, texts, expected))
                    rounds.setdefault((kind, clients), []).append(run)
                    print(
                        f"{kind:<8} C={clients:<4} {run.qps:7.1f} q/s  p50 {run.percentile(0.5):7.1f} ms  "
                        f"p99 {run.percentile(0.99):7.1f} ms  cpu {run.cpu_ms:5.2f} ms/q  errors {run.errors}",
                        flush=True,
                    )
    runs = {key: sorted(found, key=lambda r: r.qps)[len(found) // 2] for key, found in rounds.items()}
    print()
    print(
        "| clients | one run per request: q/s, p50, p99, CPU/query | dynamic batching: q/s, p50, p99, CPU/query "
        "| throughput ratio |"
    )
    print("|---:|---:|---:|---:|")
    for clients in counts:
        naive, batched = runs["naive", clients], runs["batched", clients]
        print(
            f"| {clients} | {naive.qps:.0f}, {naive.percentile(0.5):.1f} ms, {naive.percentile(0.99):.1f} ms, "
            f"{naive.cpu_ms:.2f} ms | {batched.qps:.0f}, {batched.percentile(0.5):.1f} ms, "
            f"{batched.percentile(0.99):.1f} ms, {batched.cpu_ms:.2f} ms | "
            f"{batched.qps / naive.qps:.2f}x |"
        )
    failed = sum(run.errors for found in rounds.values() for run in found)
    print(
        f"\ntotal: {failed} errors or mismatches; median of p50s "
        f"{statistics.median(r.percentile(0.5) for r in runs.values()):.1f} ms"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
