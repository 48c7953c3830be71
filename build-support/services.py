# The model services under services/, one line each, in the order they were added.
# A BUILD-file prelude: k8s/BUILD declares each one's overlays from it, and the cross-service
# tests (tests/*) depend on and test each one. `./pants run tools/new-service -- <name>` adds a line.
MODEL_SERVICES = (
    "titanic",
    "iris",
    "diabetes",
)
