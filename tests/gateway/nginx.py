"""The gateway as the rendered Ingress declares it, run by Debian's nginx on loopback.

`ingress_routes` reads the Ingress objects of rendered overlays: per host, each path (Exact or
Prefix), its body limit and its Service; `grpc_routes`, the gRPC Ingresses' (backend protocol
GRPC). Canary Ingresses (`nginx.ingress.kubernetes.io/canary: "true"`, which Argo Rollouts makes
from the stable ones: tests/gateway/argo.py) are not routes of their own: `canary_splits` reads
them as ingress-nginx does, as another backend for the same host and path, taking
`canary-weight` percent of requests chosen at random, or those whose `canary-by-header` header
says `always` (and never those where it says `never`).
`running_gateway` writes an nginx configuration routing exactly those (`Prefix` as
ingress-nginx reads it: the path itself and everything under it; `Exact`, the path alone),
each to the backend the test says serves it, with the path kept as the Ingress keeps it, and a
default server and location answering 404 to anything else; each gRPC host's paths go, over
HTTP/2, to its backend's gRPC port, on a listener of its own (cleartext HTTP/2 here;
ingress-nginx negotiates it over TLS). nginx runs in the foreground until the block ends.
Tests reach it on its port with the host's name in the Host header (gRPC: the channel's
authority).
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

from modelserving.dev.testing import free_port

BODY_SIZE_ANNOTATION = "nginx.ingress.kubernetes.io/proxy-body-size"
BACKEND_PROTOCOL_ANNOTATION = "nginx.ingress.kubernetes.io/backend-protocol"
CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"
HEADER_ANNOTATION = "nginx.ingress.kubernetes.io/canary-by-header"


@dataclass(frozen=True)
class Route:
    host: str
    path: str
    exact: bool  # pathType Exact; else Prefix
    body_size: str  # nginx's syntax, as the annotation gives it
    service: str = ""  # the backend Service's name

    def locations(self) -> list[str]:
        """nginx's `location` matches for the path, as ingress-nginx reads its pathType."""
        if self.exact:
            return [f"= {self.path}"]
        prefix = self.path.rstrip("/")
        return [f"= {prefix}", f"{prefix}/"]


@dataclass(frozen=True)
class Split:
    """A route's two backends, as ingress-nginx splits them for a canary Ingress."""

    stable: str  # upstream address
    canary: str
    weight: int  # percent of requests to the canary
    header: str | None  # the request header that pins a request: `always` canary, `never` stable


def _ingresses(objects: list[dict[str, Any]], grpc: bool, canary: bool) -> Iterator[dict[str, Any]]:
    for ingress in (obj for obj in objects if obj["kind"] == "Ingress"):
        annotations = ingress["metadata"].get("annotations") or {}
        # A canary Ingress takes its other annotations from its stable one (the backend protocol too).
        if (annotations.get(CANARY_ANNOTATION) == "true") != canary:
            continue
        if not canary and (annotations.get(BACKEND_PROTOCOL_ANNOTATION) == "GRPC") != grpc:
            continue
        yield ingress


def _routes(objects: list[dict[str, Any]], grpc: bool, canary: bool = False) -> list[Route]:
    """Every path of the REST (or gRPC) Ingress objects, with its host, body limit and Service."""
    routes = []
    for ingress in _ingresses(objects, grpc, canary):
        annotations = ingress["metadata"].get("annotations") or {}
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["pathType"] in (
                    "Exact",
                    "Prefix",
                ), f"only Exact and Prefix are routed here: {path}"
                exact = path["pathType"] == "Exact"
                size = annotations.get(BODY_SIZE_ANNOTATION, "1m")
                service = path["backend"]["service"]["name"]
                routes.append(Route(rule["host"], path["path"], exact, size, service))
    return routes


def ingress_routes(objects: list[dict[str, Any]]) -> list[Route]:
    return _routes(objects, grpc=False)


def grpc_routes(objects: list[dict[str, Any]]) -> list[Route]:
    return _routes(objects, grpc=True)


def canary_splits(
    objects: list[dict[str, Any]], routes: list[Route], upstreams: Mapping[str, str]
) -> dict[Route, Split]:
    """Each of `routes` as the canary Ingresses among `objects` split it between the upstreams
    of its Service and of the canary's (`upstreams`: each Service's address)."""
    splits = {}
    for ingress in _ingresses(objects, grpc=False, canary=True):
        annotations = ingress["metadata"]["annotations"]
        weight = int(annotations.get(WEIGHT_ANNOTATION, "0"))
        header = annotations.get(HEADER_ANNOTATION)
        for canary in _routes([ingress], grpc=False, canary=True):
            for route in routes:
                if (route.host, route.path, route.exact) == (canary.host, canary.path, canary.exact):
                    splits[route] = Split(upstreams[route.service], upstreams[canary.service], weight, header)
    return splits


Backend = str | Split  # an upstream address, or a canary's split


def nginx_configuration(
    directory: Path,
    port: int,
    backends: Mapping[Route, Backend],
    grpc_port: int = 0,
    grpc: Mapping[Route, Backend] | None = None,
) -> str:
    """`backends`: each route's upstream (`127.0.0.1:<port>`, or a `Split` of two); `grpc`: each
    gRPC route's, served on `grpc_port`."""
    upstreams: dict[str, str] = {}  # address: its upstream block's name
    splits: list[str] = []  # split_clients blocks

    def upstream(address: str) -> str:
        return upstreams.setdefault(address, f"backend_{len(upstreams)}")

    def target(backend: Backend) -> tuple[str, str]:
        """The location's directives choosing its upstream, and the upstream (a variable for a split)."""
        if isinstance(backend, str):
            return "", upstream(backend)
        stable, canary = upstream(backend.stable), upstream(backend.canary)
        chosen = f"$split_{len(splits)}"
        # ingress-nginx draws each request at random against the weight: here, on its request id.
        share = f"{backend.weight}% {canary}; " if backend.weight else ""
        splits.append(f'split_clients "$request_id" {chosen} {{ {share}* {stable}; }}')
        choose = f"set $backend {chosen};"
        if backend.header:
            header = "$http_" + backend.header.lower().replace("-", "_")
            choose += f' if ({header} = "always") {{ set $backend {canary}; }}'
            choose += f' if ({header} = "never") {{ set $backend {stable}; }}'
        return choose, "$backend"

    def servers(routes: Mapping[Route, Backend], proxy: str, listen: str) -> list[str]:
        hosts: dict[str, list[str]] = {}
        for route, backend in routes.items():
            choose, name = target(backend)
            directives = f"{choose} {proxy.format(upstream=name)} client_max_body_size {route.body_size};"
            hosts.setdefault(route.host, []).extend(
                f"location {match} {{ {directives} }}" for match in route.locations()
            )
        refuse = "location / { return 404; }"
        return [
            f"server {{ listen {listen}; server_name {host}; {' '.join(locations)} {refuse} }}"
            for host, locations in hosts.items()
        ]

    temp = " ".join(
        f"{kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    blocks = servers(
        backends, "proxy_pass http://{upstream}; proxy_set_header Host $host;", f"127.0.0.1:{port}"
    )
    if grpc:
        blocks.append(f"server {{ listen 127.0.0.1:{grpc_port} http2 default_server; return 404; }}")
        blocks += servers(grpc, "grpc_pass grpc://{upstream};", f"127.0.0.1:{grpc_port} http2")
    pools = [f"upstream {name} {{ server {address}; }}" for address, name in upstreams.items()]
    return (
        f"pid {directory / 'nginx.pid'}; error_log stderr; events {{}}\n"
        f"http {{ access_log off; {temp}\n"
        + "\n".join(pools + splits)
        + f"\nserver {{ listen 127.0.0.1:{port} default_server; return 404; }}\n"
        + "\n".join(blocks)
        + "\n}\n"
    )


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        pytest.fail("nginx not found: ./pants test installs it (3rdparty/system/tools.txt)", pytrace=False)
    return found


@contextmanager
def running_gateway(
    scratch: Path,
    backends: Mapping[Route, Backend],
    grpc_port: int = 0,
    grpc: Mapping[Route, Backend] | None = None,
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
