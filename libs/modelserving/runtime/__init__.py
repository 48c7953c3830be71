"""The data plane and what runs beside it in a worker: batching, admission, metrics, logs."""
