"""Each service's image, run exactly as its prod Deployment declares (no cluster runs here).

From the rendered prod overlay this reads the container's image, security
context, volumes, environment (ConfigMap and env), named port and probes, runs
the image Pants built under the equivalent `docker run` flags, and then
requests each probe's path on the declared port and makes a prediction, over REST on
the http port and over gRPC on the grpc port: refused without a bearer token (prod
requires one, from a Secret reproduced here as a read-only directory holding a new
token), served with it. A
probe path the app does not serve, a uid the image cannot run as, or a root
filesystem it needs to write fails here before it fails in a cluster.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from containers.engine import built_image, built_names, docker_client
from containers.harness import (
    CLUSTER_ONLY_SETTINGS,
    SERVICES,
    grpc_prediction,
    http_get,
    prediction_request,
    rest_prediction,
)
from tritonclient.utils import InferenceServerException  # type: ignore[import]

from modelserving.dev.testing import free_port, grpc_health, raised


def prod_manifests(service: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", f"k8s/{service}/overlays/prod"], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def docker_flags(pod: dict[str, Any], container: dict[str, Any], secrets: dict[str, Path]) -> list[str]:
    """`docker run` flags equivalent to the pod's and container's security settings and volumes
    (a Secret volume is the directory `secrets` gives for its secretName, mounted read-only)."""
    security = {**pod.get("securityContext", {}), **container["securityContext"]}
    flags = ["--network", "host", "--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    if security.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    for capability in security.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", capability]
    for capability in security.get("capabilities", {}).get("add", []):
        flags += ["--cap-add", capability]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            flags += ["-v", f"{secrets[volume['secret']['secretName']]}:{mount['mountPath']}:ro"]
        else:
            assert "emptyDir" in volume, f"{mount['name']}: only emptyDir and secret volumes are reproduced"
            flags += ["--tmpfs", mount["mountPath"]]
    return flags


def made_secrets(pod: dict[str, Any], scratch: Path) -> tuple[dict[str, Path], str | None]:
    """A directory per Secret volume, each key a file holding one new token: (dirs, the token)."""
    token = secrets.token_urlsafe(32)
    directories: dict[str, Path] = {}
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            directory = scratch / volume["secret"]["secretName"]
            directory.mkdir(mode=0o755)
            for item in volume["secret"]["items"]:
                (directory / item["path"]).write_text(token + "\n")
                (directory / item["path"]).chmod(
                    0o444
                )  # the kubelet's defaultMode gives the pod's group read
            directories[volume["secret"]["secretName"]] = directory
    return directories, token if directories else None


def environment(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_image_runs_as_the_prod_deployment_declares(service: str, tmp_path: Path) -> None:
    docker = docker_client()
    manifests = prod_manifests(service)
    (deployment,) = (doc for doc in manifests if doc["kind"] == "Deployment")
    config_maps = {doc["metadata"]["name"]: doc["data"] for doc in manifests if doc["kind"] == "ConfigMap"}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    image = built_image(service)
    repository = container["image"].partition("@")[0]  # a release names it by digest (k8s/release)
    names = built_names(service)
    assert any(
        name.startswith(f"{repository}:") for name in names
    ), f"manifest image {repository} is not {names}"

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = environment(container, config_maps)
    for name in CLUSTER_ONLY_SETTINGS:  # a cluster's names (SHADOW_URL: the canary Service)
        env.pop(name, None)
    assert int(env["PORT"]) == ports["http"], "the app must listen on the declared http port"
    assert int(env["GRPC_PORT"]) == ports["grpc"], "the app must serve gRPC on the declared grpc port"
    # The host network is shared, so the declared ports may be taken: run on free ones instead.
    port, grpc_port = free_port(), free_port()
    env["PORT"], env["GRPC_PORT"] = str(port), str(grpc_port)
    env_flags = [flag for name, value in env.items() for flag in ("-e", f"{name}={value}")]

    tmp_path.chmod(0o755)
    secret_dirs, token = made_secrets(pod, tmp_path)
    assert token and "AUTH_TOKEN_FILE" in env, "prod must require bearer tokens from a Secret"
    cid = subprocess.check_output(
        [docker, "run", "-d", *docker_flags(pod, container, secret_dirs), *env_flags, image], text=True
    ).strip()
    try:
        url = f"http://127.0.0.1:{port}"
        startup = container["startupProbe"]
        deadline = time.monotonic() + startup["failureThreshold"] * startup["periodSeconds"]
        status = 0
        while time.monotonic() < deadline and status != 200:
            try:
                status, _ = http_get(url + startup["httpGet"]["path"])
            except OSError:
                time.sleep(0.2)
        logs = subprocess.run([docker, "logs", cid], capture_output=True, text=True)
        assert status == 200, f"startup probe never passed\n{logs.stdout}{logs.stderr}"
        for probe in ("startupProbe", "livenessProbe"):
            check = container[probe]["httpGet"]
            assert ports[check["port"]] == ports["http"], f"{probe} must use the http port"
            assert http_get(url + check["path"])[0] == 200, f"{probe} {check['path']} is not 200"
        readiness = container["readinessProbe"]["grpc"]  # as the kubelet asks: Check, its `service`
        assert readiness["port"] == ports["grpc"], "the readiness probe must use the grpc port"
        assert grpc_health(f"127.0.0.1:{grpc_port}", readiness.get("service", "")) == "SERVING"

        path, body = prediction_request(service)
        headers = {"content-type": "application/json"}
        anonymous = urllib.request.Request(url + path, json.dumps(body).encode(), headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(anonymous, timeout=5)
        error: urllib.error.HTTPError = refused.value
        assert error.code == 401
        assert error.headers["www-authenticate"] == "Bearer"
        headers["authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url + path, json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

        address = f"127.0.0.1:{grpc_port}"
        with pytest.raises(InferenceServerException) as anonymous_rpc:
            grpc_prediction(service, address)
        assert raised(anonymous_rpc).status() == "StatusCode.UNAUTHENTICATED"
        assert grpc_prediction(service, address, token=token) == rest_prediction(service, url, token=token)
    finally:
        subprocess.run([docker, "rm", "-f", cid], capture_output=True)
