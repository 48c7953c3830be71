"""An open-loop HTTP/1.1 load: callers arrive at a fixed rate whatever the server does, and each
gives up at its deadline, closing its connection, as callers with deadlines do.

wrk and hey are closed-loop (a connection sends its next request when the last is answered),
so an overloaded server slows their arrivals down and hides its own collapse; wrk2 and vegeta,
which are not, are not in Debian. Arrivals here are a Poisson process at `rate` per second.
Each caller takes an idle keep-alive connection of a pool of at most `connections` (as an HTTP
client library's, or a gateway's, pool is bounded), waiting for one if none is free, sends one
request and waits for the whole response until `deadline` seconds after it arrived; then it
closes the connection (the server sees its caller leave) and counts as timed out. Latencies
count from the caller's arrival, however long it waited for a connection.

Callbacks only, on uvloop when installed: no task or timer per request (a tick every
millisecond issues the arrivals due and expires the callers past their deadline), so one core
offers tens of thousands of requests a second. `Result.offered_per_second` says how many it
did; `summary` gives the figures.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench_report import percentile

HEAD_END = b"\r\n\r\n"
TICK = 0.001


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

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.expected = -1  # the response's total length, once its head is in
        self.status = 0
        self.arrived: float | None = None  # the caller's arrival, while a request is in flight
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport's subclasses, but do the same.
        self.transport = transport  # type: ignore[assignment]

    def send(self, arrived: float) -> None:
        assert self.transport is not None
        self.buffer.clear()
        self.expected = -1
        self.arrived = arrived
        self.transport.write(self.load.request)

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
        if len(self.buffer) >= self.expected and self.arrived is not None:
            arrived, self.arrived = self.arrived, None
            self.load.answered(self, arrived, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self.load.lost(self)

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()


class _Load:
    def __init__(
        self,
        host: str,
        port: int,
        request: bytes,
        *,
        rate: float,
        seconds: float,
        deadline: float,
        connections: int,
        seed: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port, self.request = host, port, request
        self.rate, self.seconds, self.deadline, self.most = rate, seconds, deadline, connections
        self.draw = random.Random(seed).expovariate
        self.idle: list[_Connection] = []
        self.pool: set[_Connection] = set()
        self.opening = 0
        self.waiting: deque[float] = deque()  # callers' arrivals, waiting for a connection
        self.in_flight: deque[tuple[float, _Connection, float]] = deque()  # (deadline, connection, arrival)
        self.outcomes: list[Outcome] = []
        self.offered = 0
        self.started = self.end = self.next_arrival = 0.0
        self.finished: asyncio.Future[None] = self.loop.create_future()

    async def run(self) -> Result:
        for _ in range(self.most):  # the pool, warm, as a client's would be under way
            _, connection = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
            self.pool.add(connection)
            self.idle.append(connection)
        self.started = self.loop.time()
        self.end = self.started + self.seconds
        self.next_arrival = self.started + self.draw(self.rate)
        self.tick()
        await self.finished
        for connection in list(self.pool):
            connection.close()
        return Result(self.seconds, self.offered, self.outcomes)

    def record(self, status: int, arrived: float, now: float) -> None:
        self.outcomes.append(Outcome(status, now - arrived, arrived - self.started))

    def tick(self) -> None:
        now = self.loop.time()
        while self.next_arrival <= now and self.next_arrival < self.end:
            self.waiting.append(self.next_arrival)
            self.offered += 1
            self.next_arrival += self.draw(self.rate)
        while self.waiting and self.waiting[0] + self.deadline <= now:
            self.record(0, self.waiting.popleft(), now)
        while self.in_flight and self.in_flight[0][0] <= now:
            _, connection, arrived = self.in_flight.popleft()
            if connection.arrived == arrived:  # still unanswered: the caller leaves
                connection.arrived = None
                self.record(0, arrived, now)
                connection.close()
        self.dispatch()
        if now >= self.end and not self.waiting and not any(c.arrived is not None for c in self.pool):
            if not self.finished.done():
                self.finished.set_result(None)
            return
        self.loop.call_later(TICK, self.tick)

    def dispatch(self) -> None:
        while self.waiting and self.idle:
            connection = self.idle.pop()
            if not connection.reusable:
                continue
            arrived = self.waiting.popleft()
            connection.send(arrived)
            self.in_flight.append((arrived + self.deadline, connection, arrived))
        wanted = min(len(self.waiting), self.most - len(self.pool) - self.opening)
        for _ in range(max(0, wanted)):
            self.opening += 1
            self.loop.create_task(self.open())

    async def open(self) -> None:
        try:
            _, connection = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            return
        finally:
            self.opening -= 1
        self.pool.add(connection)
        self.idle.append(connection)
        self.dispatch()

    def answered(self, connection: _Connection, arrived: float, status: int) -> None:
        self.record(status, arrived, self.loop.time())
        if connection.reusable:
            self.idle.append(connection)
        else:
            connection.close()
        self.dispatch()

    def lost(self, connection: _Connection) -> None:
        self.pool.discard(connection)
        if connection.arrived is not None:
            arrived, connection.arrived = connection.arrived, None
            self.record(0, arrived, self.loop.time())


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
    connections: int = 256,
    seed: int = 0,
) -> Result:
    """`rate` arrivals a second for `seconds`, each POSTing `body` to `url` with a `deadline`, over
    a pool of at most `connections` keep-alive connections (opened first)."""
    host, port, request = request_bytes(url, body, headers)
    load = _Load(
        host, port, request, rate=rate, seconds=seconds, deadline=deadline, connections=connections, seed=seed
    )
    return await load.run()


def summary(result: Result, deadline: float, since: float = 0.0) -> dict[str, float]:
    """Goodput (answers of 200 within the deadline, per second), refusals and their latency, of the
    callers that arrived `since` seconds into the load or later."""
    outcomes = [o for o in result.outcomes if o.arrived >= since]
    duration = result.duration - since
    answered = [o.seconds for o in outcomes if o.status == 200 and o.seconds <= deadline]
    refused = [o.seconds for o in outcomes if o.status == 503]
    return {
        "offered_per_second": len(outcomes) / duration,
        "goodput_per_second": len(answered) / duration,
        "refused_per_second": len(refused) / duration,
        "timed_out_per_second": sum(1 for o in outcomes if o.status == 0) / duration,
        "other_per_second": sum(1 for o in outcomes if o.status not in (0, 200, 503)) / duration,
        "answered_p50_ms": percentile(answered, 0.5) * 1000,
        "answered_p99_ms": percentile(answered, 0.99) * 1000,
        "refused_p99_ms": percentile(refused, 0.99) * 1000,
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
    parser.add_argument("--connections", type=int, default=256, help="the client's pool, at most")
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
