"""An open-loop HTTP/1.1 load: callers arrive at a fixed rate whatever the server does, and each
gives up at its deadline, closing its connection, as callers with deadlines do.

wrk and hey are closed-loop (a connection sends its next request when the last is answered),
so an overloaded server slows their arrivals down and hides its own collapse; wrk2 and vegeta,
which are not, are not in Debian. Arrivals here are a Poisson process at `rate` per second.
Each takes an idle keep-alive connection, or opens one, sends one request and waits for the
whole response until `deadline` seconds after it arrived; then it closes the connection (the
server sees its caller leave) and counts as timed out. Every caller's outcome is kept: its
status (0 for a timeout or a broken connection) and its latency.

Runs on uvloop, one core: up to some tens of thousands of arrivals a second, depending on the
bodies. `offered_per_second` in the result says how many it achieved.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HEAD_END = b"\r\n\r\n"


@dataclass
class Outcome:
    status: int  # 0: timed out, or the connection broke
    seconds: float
    arrived: float  # seconds after the load began


@dataclass
class Result:
    duration: float
    offered: int
    outcomes: list[Outcome] = field(default_factory=list)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight on it."""

    def __init__(self, pool: list[_Connection]) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.expected = -1  # the response's total length, once its head is in
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport's subclasses, but do the same.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected < 0:
            end = self.buffer.find(HEAD_END)
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
                elif line.startswith(b"connection:") and b"close" in line:
                    self.reusable = False
            self.expected = end + 4 + length
            self.status = int(self.buffer[9:12])
        if len(self.buffer) >= self.expected and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(0)

    def send(self, request: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
        assert self.transport is not None
        self.buffer.clear()
        self.expected = -1
        self.waiter = loop.create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()


def request_bytes(url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"host: {host}:{port}",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run(
    url: str,
    body: bytes,
    *,
    rate: float,
    seconds: float,
    deadline: float,
    headers: Sequence[tuple[str, str]] = (("content-type", "application/json"),),
    seed: int = 0,
    connections: int = 0,
) -> Result:
    """`rate` arrivals a second for `seconds`, each POSTing `body` to `url` with a `deadline`;
    `connections` keep-alive connections are opened first (a warm client's pool)."""
    loop = asyncio.get_running_loop()
    host, port, request = request_bytes(url, body, headers)
    idle: list[_Connection] = []
    for _ in range(connections):
        _, warm = await loop.create_connection(lambda: _Connection(idle), host, port)
        idle.append(warm)
    outcomes: list[Outcome] = []
    pending: set[asyncio.Task[None]] = set()
    draw = random.Random(seed).expovariate

    async def caller(arrived: float) -> None:
        connection: _Connection | None = None
        try:
            while idle:
                candidate = idle.pop()
                if candidate.reusable:
                    connection = candidate
                    break
            if connection is None:
                _, opened = await asyncio.wait_for(
                    loop.create_connection(lambda: _Connection(idle), host, port),
                    timeout=max(0.0, arrived + deadline - loop.time()),
                )
                connection = opened
            answered = connection.send(request, loop)
            status = await asyncio.wait_for(answered, timeout=max(0.0, arrived + deadline - loop.time()))
        except (TimeoutError, OSError):
            status = 0
        took = loop.time() - arrived
        outcomes.append(Outcome(status, took, arrived - started))
        if connection is not None:
            if status and connection.reusable:
                idle.append(connection)
            else:
                connection.close()

    started = loop.time()
    end = started + seconds
    at = started + draw(rate)
    offered = 0
    while at < end:
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(caller(at))
        pending.add(task)
        task.add_done_callback(pending.discard)
        offered += 1
        at += draw(rate)
    if pending:
        await asyncio.wait(pending)
    for connection in idle:
        connection.close()
    return Result(duration=seconds, offered=offered, outcomes=outcomes)


def summary(result: Result, deadline: float, since: float = 0.0) -> dict[str, float]:
    """Goodput (answers of 200 within the deadline, per second), refusals and their latency, of the
    callers that arrived `since` seconds into the load or later."""
    outcomes = [o for o in result.outcomes if o.arrived >= since]
    duration = result.duration - since

    def p99(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0

    answered = [o.seconds for o in outcomes if o.status == 200 and o.seconds <= deadline]
    refused = [o.seconds for o in outcomes if o.status == 503]
    return {
        "offered_per_second": len(outcomes) / duration,
        "goodput_per_second": len(answered) / duration,
        "refused_per_second": len(refused) / duration,
        "timed_out_per_second": sum(1 for o in outcomes if o.status == 0) / duration,
        "other_per_second": sum(1 for o in outcomes if o.status not in (0, 200, 503)) / duration,
        "answered_p50_ms": sorted(answered)[len(answered) // 2] * 1000 if answered else 0.0,
        "answered_p99_ms": p99(answered) * 1000,
        "refused_p99_ms": p99(refused) * 1000,
    }


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("body", help="file of the request body (JSON)")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--deadline", type=float, default=1.0)
    parser.add_argument("--header", action="append", default=[], help="name: value")
    parser.add_argument("--connections", type=int, default=0, help="keep-alive connections opened first")
    parser.add_argument("--warmup", type=float, default=0, help="seconds of load left out of the figures")
    arguments = parser.parse_args()
    headers = [("content-type", "application/json")]
    for header in arguments.header:
        name, _, value = header.partition(":")
        headers.append((name.strip(), value.strip()))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with open(arguments.body, "rb") as file:
        body = file.read()
    started = time.monotonic()
    result = asyncio.run(
        run(
            arguments.url,
            body,
            rate=arguments.rate,
            seconds=arguments.warmup + arguments.seconds,
            deadline=arguments.deadline,
            headers=headers,
            connections=arguments.connections,
        )
    )
    figures = summary(result, arguments.deadline, since=arguments.warmup)
    print(json.dumps({**figures, "wall_seconds": time.monotonic() - started}, indent=1))


if __name__ == "__main__":
    main()
