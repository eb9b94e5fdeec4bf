"""Load test of the translation server on loopback: batched against one request at a time.

    python scripts/load_test.py --checkpoint RUN --input val.de.gz [--clients 32] [--requests 8]

Starts the server twice on a free loopback port, with its default batching and then with
batching off (`--max-batch-tokens 1 --batch-window-ms 0`: each request decoded alone), and each
time lets `--clients` concurrent clients send `--requests` single-sentence requests each (beam
5, the sentences of `--input` in turn), each client waiting for its answer before sending the
next, over its own keep-alive connection (as a browser or an HTTP client library would). Prints
sentences per second, p50/p95 latency and the server's resident memory at rest and at its peak
under load. Bounded: clients x requests requests per run, and `--timeout` seconds a request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from server_process import ServerError, ServerProcess, request_json

from seq2seq.files import read_lines
from seq2seq.machine import this_machine

BATCHED: list[str] = []  # the server's defaults
ONE_AT_A_TIME = ["--max-batch-tokens", "1", "--batch-window-ms", "0"]


@dataclass
class LoadResult:
    mode: str
    requests: int
    seconds: float
    sentences_per_s: float
    p50_ms: float
    p95_ms: float
    rss_rest_mb: float
    rss_peak_mb: float


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="run dir or checkpoint file")
    parser.add_argument("--input", type=Path, required=True,
                        help="sentences to send, one per line (plain or .gz)")
    parser.add_argument("--clients", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--requests", type=int, default=16,
                        help="requests per client (default: %(default)s)")
    parser.add_argument("--beam", type=int, default=5, help="(default: %(default)s)")
    parser.add_argument("--server-args", default="",
                        help="more serve options for both runs, e.g. '--quantize int8'")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds one request may take (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sentences = [line for line in read_lines(args.input) if line.strip()]
    if not sentences:
        raise SystemExit(f"{args.input} holds no sentence")
    results = []
    with tempfile.TemporaryDirectory() as logs:
        for mode, options in (("batched", BATCHED), ("one at a time", ONE_AT_A_TIME)):
            serve_args = ["--checkpoint", args.checkpoint, *args.server_args.split(), *options]
            try:
                with ServerProcess(serve_args, Path(logs) / "serve.log") as server:
                    results.append(load(server, mode, sentences, args))
            except ServerError as error:
                raise SystemExit(str(error)) from None
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


def load(server: ServerProcess, mode: str, sentences: list[str],
         args: argparse.Namespace) -> LoadResult:
    """Warm up, then `clients` concurrent clients each sending `requests` requests one after
    another; their latencies."""
    request_json(f"{server.url}/translate", {"text": sentences[:4], "beam": args.beam},
                 args.timeout)
    rss_rest, _ = server.memory_mb()
    started = time.perf_counter()
    latencies = asyncio.run(run_clients(server.port, sentences, args))
    seconds = time.perf_counter() - started
    _, rss_peak = server.memory_mb()
    cuts = statistics.quantiles(latencies, n=100)
    return LoadResult(mode, len(latencies), seconds, len(latencies) / seconds,
                      cuts[49] * 1000, cuts[94] * 1000, rss_rest, rss_peak)


async def run_clients(port: int, sentences: list[str], args: argparse.Namespace) -> list[float]:
    """The clients as coroutines of one thread on raw keep-alive HTTP/1.1 connections: the load
    generator shares the machine's cores with the server, so it must cost little itself (32
    client threads fighting over the GIL slowed the turnaround of every batch)."""

    async def client(index: int) -> list[float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        latencies = []
        try:
            for k in range(args.requests):
                sentence = sentences[(index * args.requests + k) % len(sentences)]
                body = json.dumps({"text": [sentence], "beam": args.beam}).encode()
                started = time.perf_counter()
                writer.write(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                status, answer = await read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status != 200 or len(json.loads(answer)["translations"]) != 1:
                    raise SystemExit(f"the server answered {status}: {answer[:300]!r}")
        finally:
            writer.close()
        return latencies

    results = await asyncio.wait_for(
        asyncio.gather(*(client(i) for i in range(args.clients))),
        args.timeout * args.requests)
    return [latency for latencies in results for latency in latencies]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length (what uvicorn sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int({k.lower(): v for k, v in headers.items()}["content-length"])
    return int(lines[0].split()[1]), await reader.readexactly(length)


def print_table(results: list[LoadResult], args: argparse.Namespace) -> None:
    print(f"machine: {this_machine().line()}")
    print(f"{args.clients} clients x {args.requests} single-sentence requests, beam {args.beam}"
          f"{' (' + args.server_args + ')' if args.server_args else ''}")
    print(f"{'mode':<14} {'sent/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'RSS rest MB':>12} "
          f"{'RSS peak MB':>12}")
    for r in results:
        print(f"{r.mode:<14} {r.sentences_per_s:8.1f} {r.p50_ms:8.0f} {r.p95_ms:8.0f} "
              f"{r.rss_rest_mb:12.0f} {r.rss_peak_mb:12.0f}")
    batched, single = results
    print(f"batching serves {batched.sentences_per_s / single.sentences_per_s:.1f}x the "
          "sentences per second of one request at a time")


if __name__ == "__main__":
    main()
