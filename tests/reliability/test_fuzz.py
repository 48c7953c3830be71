"""Schemathesis fuzzing of every model service's OpenAPI schema, against a real server process.

For each registered service (build-support/services.py, passed as $MODEL_SERVICES), the
schema comes from the app itself (`app.openapi()`, no server needed to collect the tests),
and each operation gets one pytest test: Schemathesis generates valid and invalid requests
(its examples, coverage and fuzzing phases) and sends them over HTTP to the service running
as `python -m <service>.main` on a loopback port, checking each response:

  not_a_server_error           no 5xx, whatever the input;
  status_code_conformance      the status code is one the operation documents;
  response_schema_conformance  the body matches the documented schema for that status.

Bounded by FUZZ_MAX_EXAMPLES per operation (default 50) and derandomized, so a failure
reproduces; FUZZ_MAX_EXAMPLES=500 for a longer local run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from modelserving import ModelService, Settings
from modelserving.dev.testing import registered_services, running_server, yield_the_cpu
from modelserving.server.app import create_app

yield_the_cpu()  # this module sends thousands of generated requests

SERVICES = registered_services()
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "50"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# Requests sent per operation ("<service> <METHOD> <path>"), printed at the end (`-rA` or `-s`).
SENT: Counter[str] = Counter()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One real server per service, started on first use; their URLs by service name."""
    with ExitStack() as stack:

        class Lazy(dict[str, str]):
            def __missing__(self, name: str) -> str:
                # Warnings only: the server's output is piped, and access logs would fill the pipe.
                _, self[name] = stack.enter_context(running_server(f"{name}.main", LOG_LEVEL="warning"))
                return self[name]

        yield Lazy()
    print("\nrequests sent per operation:")
    for label, count in sorted(SENT.items()):
        print(f"  {count:5d}  {label}")


def fuzz(service: ModelService[Any, Any]) -> Callable[..., None]:
    schema = schemathesis.openapi.from_dict(create_app(service, Settings()).openapi())
    # Schemathesis' own Hypothesis settings: no deadline, and these (deterministic: derandomized).
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")

    @schema.parametrize()
    def test(case: schemathesis.Case[Any], servers: dict[str, str]) -> None:
        SENT[f"{service.name} {case.operation.label}"] += 1
        case.call_and_validate(base_url=servers[service.name], checks=CHECKS, timeout=10)

    parametrized: Callable[..., None] = test  # `parametrize()` returns a bare Callable
    return parametrized


def figures_of(item: pytest.Item) -> dict[str, object]:
    """For RELIABILITY.md (conftest.py): the requests sent by one test, `test_<service>[<operation>]`."""
    service, _, operation = item.name.removeprefix("test_").partition("[")
    return {"requests": SENT[f"{service} {operation.removesuffix(']')}"]}


for _service in SERVICES:
    globals()[f"test_{_service.name}"] = fuzz(_service)
