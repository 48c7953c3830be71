"""Payload logging in titanic's real image (issue #28, point 2), under the Pod's flags
(`harness.run_image`: read-only root, uid 1001, no capabilities or new privileges, a tmpfs /tmp).

The root filesystem is read-only, so PAYLOAD_LOG_FILE is on a directory mounted as a volume
would be. Titanic's examples go in over the typed REST route and over gRPC, with the token; the
file then holds one CloudEvent per request, in the JSON format, with `Name` and `Ticket` (which
titanic's schema marks personal) replaced by their HMAC-SHA256 under PAYLOAD_LOG_HASH_KEY,
computed here with the standard library, and neither the token nor any name in it. A file on
the read-only root stops the container at start-up, in one line.
"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from containers.engine import built_image, docker_client
from containers.harness import POD_FLAGS, SERVICES, TOKEN, grpc_prediction, rest_prediction, run_image

from modelserving.dev.testing import example_rows
from titanic.schemas import Passenger

NAME = "titanic"
KEY = "titanic-payload-key-0123456789abcdef"


def keyed_hash(value: str) -> str:
    return "hmac-sha256:" + hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def logged_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as its event must hold it: every field (the unknown ones null), Name and Ticket hashed."""
    expected: dict[str, Any] = {field: None for field in Passenger.model_fields} | row
    for personal in ("Name", "Ticket"):
        if expected[personal] is not None:
            expected[personal] = keyed_hash(expected[personal])
    return expected


def test_titanic_logs_every_protocols_predictions_to_a_mounted_file_with_name_and_ticket_hashed(
    tmp_path: Path,
) -> None:
    volume = tmp_path / "payloads"
    volume.mkdir()
    tmp_path.chmod(0o755)
    volume.chmod(0o777)  # the Pod's uid 1001 writes there
    events_file = volume / "events.jsonl"
    with ExitStack() as stack:
        url, grpc_address = run_image(
            docker_client(),
            NAME,
            {},
            stack,
            built_image(NAME),
            ["-v", f"{volume}:/payloads"],
            PAYLOAD_LOG_FILE="/payloads/events.jsonl",
            PAYLOAD_LOG_SAMPLE_RATE="1",
            PAYLOAD_LOG_HASH_KEY=KEY,
        )
        over_rest = rest_prediction(NAME, url, TOKEN)
        over_grpc = grpc_prediction(NAME, grpc_address, TOKEN)
        deadline = time.monotonic() + 10
        while not events_file.exists() or len(events_file.read_bytes().splitlines()) < 2:
            assert time.monotonic() < deadline, "the events were never written"
            time.sleep(0.05)
    text = events_file.read_text()
    written: list[Any] = [JSONFormat().read(None, line) for line in text.splitlines()]
    events = {event.get_extension("protocol"): event for event in written}
    assert set(events) == {"rest", "v2-grpc"}
    rows = example_rows(SERVICES[NAME])
    for protocol, predictions in (("rest", over_rest), ("v2-grpc", over_grpc)):
        event = events[protocol]
        data = event.get_data()
        assert event.get_type() == "modelserving.inference.payload"
        assert event.get_source() == "/modelserving/titanic"
        assert data["model_name"] == "titanic" and data["model_version"] == event.get_extension(
            "modelversion"
        )
        assert data["rows"] == [logged_row(row) for row in rows]
        assert data["response"]["predictions"] == predictions
        assert data["personal"] == {"Name": "hmac-sha256", "Ticket": "hmac-sha256"}
    assert TOKEN not in text
    for row in rows:
        assert row["Name"] not in text


def test_a_payload_file_on_the_read_only_root_stops_the_container_in_one_line() -> None:
    settings = {"AUTH_TOKEN": TOKEN, "PAYLOAD_LOG_FILE": "/events.jsonl"}
    flags = [flag for name, value in settings.items() for flag in ("-e", f"{name}={value}")]
    run = subprocess.run(
        [docker_client(), "run", "--rm", *POD_FLAGS, *flags, built_image(NAME)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("titanic: PAYLOAD_LOG_FILE='/events.jsonl' cannot be opened for appending: ")
    assert "mounted volume" in line
