"""A worker process: the data plane, REST and gRPC composed and served (`serve`, `entry_points`)."""
