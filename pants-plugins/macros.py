# BUILD-file macros, loaded into every BUILD file by [GLOBAL].build_file_prelude_globs.
# A prelude cannot import; it defines plain functions that declare targets.


def model_service(name, data=True, test_timeout=600, **kwargs):
    """All targets of one model service under services/<name>/.

    <name>/*.py               :lib     the service's code (schemas, model, training)
    <name>/model/*            :model   the committed artifact and model card
    <name>/data/*             :data    training data; `data=False` for a service without
                                       a data/ directory (one training on a bundled data set)
    <name>/test_*.py          :tests   API and model-quality tests
    :serve  `./pants run services/<name>:serve` / `package` -> a PEX serving the model
    :train  `./pants run services/<name>:train` -> retrains into services/<name>/model/
    """
    resources(name="model", sources=["model/*"])
    if data:
        resources(name="data", sources=["data/*"])
    lib_dependencies = [":model", ":data"] if data else [":model"]
    python_sources(name="lib", sources=["*.py", "!test_*.py"], dependencies=lib_dependencies, **kwargs)
    python_tests(
        name="tests",
        sources=["test_*.py"],
        dependencies=[":lib", "3rdparty/python#httpx"],
        timeout=test_timeout,
    )
    pex_binary(
        name="serve",
        entry_point=f"{name}.main:main",
        dependencies=[":lib"],
        execution_mode="venv",
        include_tools=True,
        restartable=True,
    )
    pex_binary(name="train", entry_point=f"{name}.train:main", dependencies=[":lib"])
