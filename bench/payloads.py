"""Payload logging (#28): what it costs the request path, off and on, and its thread per event.

    ./pants run bench:payloads

In process, with Titanic's example passenger and a typed one-row response:
- off: `DataPlane.predict`'s one added test (`payloads is not None`), over an empty call;
- on, at sample rates 0.01, 0.1 and 1: `PayloadLog.offer` per request (the draw, and for a
  sampled one the hand-off to the queue), to a JSON-lines file in a temporary directory, the
  logger's thread writing meanwhile; the fastest of 7 runs of 20,000 requests, and the median;
- the thread's own work per event: building the CloudEvent (keyed hashes included),
  serialising it and appending it to the file.
Figures only: the serving benchmark's c1 ratios are bench/benchmark.py's.
"""

import statistics
import tempfile
import time
import timeit
from pathlib import Path

from pydantic import SecretStr

from modelserving import Settings
from modelserving.runtime.metrics import Metrics
from modelserving.runtime.payloads import FileSink, PayloadLog, Sampled
from titanic.main import SERVICE
from titanic.schemas import SurvivalResponse

KEY = "bench-payload-key-0123456789"
REQUESTS, RUNS = 20_000, 7


class Plane:
    payloads: PayloadLog | None = None


def main() -> None:
    rows = list(SERVICE.examples[:1])
    response = SurvivalResponse.model_validate(
        {
            "predictions": [{"passenger_id": 1, "survived": False, "score": 0.1}],
            "metadata": {"titanic_model_version": 1},
        }
    )
    events = Path(tempfile.mkdtemp(prefix="payloads-bench-")) / "events.jsonl"
    plane = Plane()

    def empty() -> None:
        pass

    def off() -> None:
        if plane.payloads is not None:
            plane.payloads.offer(rows, response, None)

    calls = 1_000_000
    baseline = min(timeit.repeat(empty, number=calls, repeat=RUNS)) / calls
    tested = min(timeit.repeat(off, number=calls, repeat=RUNS)) / calls
    print(f"off: {1e9 * (tested - baseline):.0f} ns per request over an empty call")

    for rate in (0.01, 0.1, 1.0):
        settings = Settings(
            payload_log_file=events,
            payload_log_sample_rate=rate,
            payload_log_queue_size=REQUESTS,
            payload_log_hash_key=SecretStr(KEY),
        )
        logger = PayloadLog(SERVICE, settings, Metrics())
        logger.start("1")
        seconds = []
        for _ in range(RUNS):
            started = time.perf_counter()
            for _ in range(REQUESTS):
                logger.offer(rows, response, None)
            seconds.append((time.perf_counter() - started) / REQUESTS)
            while logger.queued:
                time.sleep(0.01)
        logger.stop(5.0)
        print(
            f"on, sample rate {rate:g}: {1e6 * min(seconds):.2f} us per request on the request path "
            f"(median {1e6 * statistics.median(seconds):.2f})"
        )

    logger = PayloadLog(
        SERVICE, Settings(payload_log_file=events, payload_log_hash_key=SecretStr(KEY)), Metrics()
    )
    logger.start("1")
    item = Sampled(rows, response, "bench", logger.typed_route, time.time())
    sink = FileSink(events)
    per_event = min(timeit.repeat(lambda: sink.write(logger.event(item)), number=2000, repeat=5)) / 2000
    logger.stop(1.0)
    sink.close()
    print(f"the logger's thread: {1e6 * per_event:.0f} us to build, serialise and append one event")


if __name__ == "__main__":
    main()
