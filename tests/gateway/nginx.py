"""The gateway as the rendered Ingress declares it, run by Debian's nginx on loopback.

`ingress_routes` reads the Ingress objects of rendered overlays: per host, each path prefix
and its body limit; `grpc_routes`, the gRPC Ingresses' hosts (backend protocol GRPC).
`running_gateway` writes an nginx configuration routing exactly those (`Prefix` as
ingress-nginx reads it: the path itself and everything under it), each prefix to the backend
the test says serves it, with the prefix kept as the Ingress keeps it, and a default server
answering 404 to anything else; each gRPC host goes, over HTTP/2, to its backend's gRPC port,
on a listener of its own (cleartext HTTP/2 here; ingress-nginx negotiates it over TLS). nginx
runs in the foreground until the block ends. Tests reach it on its port with the host's name
in the Host header (gRPC: the channel's authority).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserving.testing import free_port

BODY_SIZE_ANNOTATION = "nginx.ingress.kubernetes.io/proxy-body-size"
BACKEND_PROTOCOL_ANNOTATION = "nginx.ingress.kubernetes.io/backend-protocol"


@dataclass(frozen=True)
class Route:
    host: str
    prefix: str  # an Ingress path of pathType Prefix
    body_size: str  # nginx's syntax, as the annotation gives it


def _ingresses(objects: list[dict[str, Any]], grpc: bool) -> Iterator[tuple[dict[str, Any], str]]:
    """The REST (or gRPC) Ingress objects, each with its body limit."""
    for ingress in (obj for obj in objects if obj["kind"] == "Ingress"):
        annotations = ingress["metadata"].get("annotations") or {}
        if (annotations.get(BACKEND_PROTOCOL_ANNOTATION) == "GRPC") == grpc:
            yield ingress, annotations.get(BODY_SIZE_ANNOTATION, "1m")


def grpc_routes(objects: list[dict[str, Any]]) -> list[Route]:
    """Each gRPC Ingress's host: everything on it goes to the backend's gRPC port."""
    routes = []
    for ingress, body_size in _ingresses(objects, grpc=True):
        for rule in ingress["spec"]["rules"]:
            assert [path["path"] for path in rule["http"]["paths"]] == [
                "/"
            ], f"a gRPC host routes all: {rule}"
            routes.append(Route(rule["host"], "/", body_size))
    return routes


def ingress_routes(objects: list[dict[str, Any]]) -> list[Route]:
    routes = []
    for ingress, body_size in _ingresses(objects, grpc=False):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["pathType"] == "Prefix", f"only Prefix paths are routed here: {path}"
                routes.append(Route(rule["host"], path["path"].rstrip("/"), body_size))
    return routes


def nginx_configuration(
    directory: Path,
    port: int,
    backends: Mapping[Route, str],
    grpc_port: int = 0,
    grpc: Mapping[Route, str] | None = None,
) -> str:
    """`backends`: each route's upstream (`127.0.0.1:<port>`); `grpc`: each gRPC host's, served on
    `grpc_port`."""
    servers: dict[str, list[str]] = {}
    for route, upstream in backends.items():
        proxy = (
            f"proxy_pass http://{upstream}; proxy_set_header Host $host; "
            f"client_max_body_size {route.body_size};"
        )
        servers.setdefault(route.host, []).extend(
            [f"location = {route.prefix} {{ {proxy} }}", f"location {route.prefix}/ {{ {proxy} }}"]
        )
    temp = " ".join(
        f"{kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    blocks = [
        f"server {{ listen 127.0.0.1:{port}; server_name {host}; "
        f"{' '.join(locations)} location / {{ return 404; }} }}"
        for host, locations in servers.items()
    ]
    grpc = grpc or {}
    if grpc:
        blocks.append(f"server {{ listen 127.0.0.1:{grpc_port} http2 default_server; return 404; }}")
    blocks += [
        f"server {{ listen 127.0.0.1:{grpc_port} http2; server_name {route.host}; "
        f"client_max_body_size {route.body_size}; location / {{ grpc_pass grpc://{upstream}; }} }}"
        for route, upstream in grpc.items()
    ]
    return (
        f"pid {directory / 'nginx.pid'}; error_log stderr; events {{}}\n"
        f"http {{ access_log off; {temp}\n"
        f"server {{ listen 127.0.0.1:{port} default_server; return 404; }}\n" + "\n".join(blocks) + "\n}\n"
    )


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        pytest.fail("nginx not found: ./pants test installs it (3rdparty/system/tools.txt)", pytrace=False)
    return found


@contextmanager
def running_gateway(
    scratch: Path, backends: Mapping[Route, str], grpc_port: int = 0, grpc: Mapping[Route, str] | None = None
) -> Iterator[str]:
    """nginx routing `backends` (and the gRPC hosts `grpc` on `grpc_port`); yields its URL
    (http://127.0.0.1:<port>)."""
    port = free_port()
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "nginx.conf").write_text(nginx_configuration(scratch, port, backends, grpc_port, grpc))
    command = [nginx_binary(), "-p", str(scratch), "-c", str(scratch / "nginx.conf"), "-e", "stderr"]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=10)
