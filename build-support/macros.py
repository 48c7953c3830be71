# BUILD-file macros, loaded into every BUILD file by [GLOBAL].build_file_prelude_globs.
# A prelude cannot import; it defines plain functions that declare targets.


def model_service(name, data=True, conftest=False, model_dependencies=(), test_timeout=600, **kwargs):
    """All targets of one model service under services/<name>/.

    Serving and training are split: `:serve`, and so the image, holds what <name>/main.py
    imports (Pants infers it, module by module) and the model; never train.py, modules only
    training imports, the data, or libraries only they need.

    :sources  <name>/*.py        the service's modules, one target each
    :model    <name>/model/*     the committed artifact and model card; `model_dependencies`:
                                 what loading the artifact imports that no module does (a
                                 pickled pipeline: ["3rdparty/python#scikit-learn"])
    :data     <name>/data/*      training data; `data=False` for a service without a data/
                                 directory (one training on a bundled data set)
    :lib      the whole service (sources, model, data), for tests and tools that use all of it
    :tests    <name>/test_*.py   API and model-quality tests
    :test_utils  <name>/conftest.py, where the tests share fixtures (`conftest=True`)
    :serve    <name>/main.py with its imports, and :model. `./pants run services/<name>:serve`;
              `package` -> the PEX the image installs
    :train    <name>/train.py with its imports, and :data. `./pants run services/<name>:train`
              retrains into services/<name>/model/
    :image    `./pants package services/<name>:image` -> container image modelserving-<name>,
              FROM the hardened base (base-image:base), tagged with the git revision
    :sbom     the image's SBOM (CycloneDX JSON: Debian packages and Python distributions, with
              versions and sha256), in the image at /usr/share/sbom/modelserving-<name>.cdx.json;
              `./pants export-codegen services/<name>:sbom` writes it to dist/codegen/
    """
    resources(name="model", sources=["model/*"], dependencies=list(model_dependencies))
    data_targets = [":data"] if data else []
    if data:
        resources(name="data", sources=["data/*"])
    python_sources(name="sources", sources=["*.py", "!test_*.py", "!conftest.py"], **kwargs)
    if conftest:
        python_test_utils(name="test_utils", sources=["conftest.py"])
    target(name="lib", dependencies=[":sources", ":model", *data_targets])
    python_tests(
        name="tests",
        sources=["test_*.py"],
        dependencies=[":lib", "3rdparty/python#httpx"],
        timeout=test_timeout,
    )
    pex_binary(
        name="serve",
        entry_point=f"{name}.main:main",
        dependencies=[":model"],
        execution_mode="venv",
        include_tools=True,
        restartable=True,
    )
    pex_binary(name="train", entry_point=f"{name}.train:main", dependencies=data_targets)
    adhoc_tool(
        name="sbom",
        runnable="tools/sbom:sbom",
        args=[
            "--rootfs", "base-image/rootfs.tar",
            "--pex", f"services.{name}/serve.pex",
            "--wheels", "3rdparty/python/wheels.txt",
            "--image", f"modelserving-{name}",
            "--output", f"services/{name}/sbom.cdx.json",
        ],
        execution_dependencies=[":serve", "base-image:rootfs", "3rdparty/python:wheels"],
        output_files=[f"services/{name}/sbom.cdx.json"],
        workdir="/",
        timeout=120,
    )
    # What the image installs: the PEX with its shared objects stripped (tools/strip-pex).
    adhoc_tool(
        name="serve-stripped",
        runnable="tools/strip-pex:strip-pex",
        args=[f"services.{name}/serve.pex", f"services.{name}/serve-stripped.pex"],
        execution_dependencies=[":serve"],
        runnable_dependencies=["tools/strip-pex:strip"],
        output_files=[f"services.{name}/serve-stripped.pex"],
        workdir="/",
        log_output=True,
        timeout=300,
    )
    docker_image(
        name="image",
        instructions=service_image_instructions(name),
        dependencies=[":serve-stripped", ":sbom", "base-image:base"],
        repository=f"modelserving-{name}",
        image_tags=["{build_args.GIT_COMMIT}", "latest"],
    )


# Python run (exec-form, no shell) in the image build after the venv install: removes what
# serving never imports or reads: third-party test suites and type stubs; what builds extensions
# against a wheel (C sources and headers, Cython sources, static libraries); NumPy's test-only
# extension modules (its SIMD test module `_simd` among them, 1.4 MB) and f2py, its generator of
# Fortran bindings. About 4 MB, which the OpenTelemetry SDK and the CloudEvents SDK (issue #28) need.
_PRUNE_VENV = (
    "import pathlib, shutil; "
    "sp = next(pathlib.Path('/app/venv/lib').glob('python3*/site-packages')); "
    "[shutil.rmtree(d) for d in sorted(sp.glob('*/**/tests')) if d.is_dir()]; "
    "[shutil.rmtree(d) for d in sp.glob('numpy/f2py')]; "
    "[f.unlink() for p in ('*.pyi', '*.c', '*.h', '*.pyx', '*.pxd', '*.pxi', '*.a') for f in sp.rglob(p)]; "
    "[f.unlink() for p in ('_*_tests.*.so', '_simd.*.so') for f in sp.glob('numpy/_core/' + p)]"
)


def service_image_instructions(name):
    """The Dockerfile of every service image (issue #4).

    Stage one installs the service's PEX, its shared objects stripped (`:serve-stripped`), into
    a venv with bytecode precompiled (exec-form RUN: the base has no shell); the image gets only the venv, owned by root and read-only
    to the service's user 1001, so it runs on a read-only root filesystem.
    """
    return [
        "ARG BASE_IMAGE=base-image:base",
        "FROM $BASE_IMAGE AS install",
        "USER 0:0",
        f"COPY services.{name}/serve-stripped.pex /install/serve.pex",
        "ENV PEX_TOOLS=1",
        'RUN ["/usr/bin/python3.11", "/install/serve.pex", "venv", "--compile", "/app/venv"]',
        # Third-party test suites and type stubs are never imported when serving (about
        # 110 MB for numpy/scipy/pandas/scikit-learn): drop them to keep within budget.
        'RUN ["/usr/bin/python3.11", "-c", "' + _PRUNE_VENV + '"]',
        "",
        "FROM $BASE_IMAGE",
        "ARG GIT_COMMIT=unknown",
        "ARG GIT_COMMIT_DATE=unknown",
        "ARG IMAGE_SOURCE=model-serving-monorepo",
        "LABEL "
        f'org.opencontainers.image.title="modelserving-{name}" '
        f'org.opencontainers.image.description="The {name} model service" '
        'org.opencontainers.image.source="$IMAGE_SOURCE" '
        'org.opencontainers.image.revision="$GIT_COMMIT" '
        'org.opencontainers.image.created="$GIT_COMMIT_DATE" '
        'org.opencontainers.image.base.name="modelserving-base"',
        "COPY --from=install /app/venv /app/venv",
        f"COPY services/{name}/sbom.cdx.json /usr/share/sbom/modelserving-{name}.cdx.json",
        # REST on 8000; the Open Inference Protocol's gRPC API on 8081 (MLServer's and KServe's).
        "ENV HOST=0.0.0.0 PORT=8000 GRPC_PORT=8081 APP_REVISION=$GIT_COMMIT",
        "EXPOSE 8000 8081",
        "USER 1001:1001",
        'ENTRYPOINT ["/app/venv/pex"]',
    ]


def service_overlays(service, environments=("dev", "staging", "prod")):
    """One target per kustomize overlay of `service` under k8s/, e.g. k8s:titanic-prod.

    Each holds the overlay's and the service base's files and depends on the shared
    components and on the service's image, so `--changed-since ... --changed-dependents=transitive`
    selects an overlay when its files, the shared components or its image's inputs change.
    """
    for environment in environments:
        files(
            name=f"{service}-{environment}",
            description=f"k8s/{service}/overlays/{environment}",
            tags=["overlay"],
            sources=[f"{service}/base/*.yaml", f"{service}/overlays/{environment}/*.yaml"],
            dependencies=[":components", f"services/{service}:image"],
        )


def model_services(found):
    """The model services, from $MODEL_SERVICES as a BUILD file reads it:
    `SERVICES = model_services(env("MODEL_SERVICES"))`. The `./pants` launcher finds them: each
    `services/<name>/BUILD` that declares one (`model_service(...)`). No file lists them, so
    adding or removing a service changes only that service's own files. (Pants gives a BUILD
    file only the variables it names itself in `env("...")`, hence the argument.)"""
    return tuple(name for name in (found or "").split(",") if name)


def model_services_env(services):
    """The model services as an environment variable for the cross-service tests:
    `python_tests(extra_env_vars=[model_services_env(SERVICES)], ...)`."""
    return "MODEL_SERVICES=" + ",".join(services)


def every_service(address_template, services):
    """`every_service("services/{}:lib", SERVICES)`: that address for each model service."""
    return [address_template.format(service) for service in services]
