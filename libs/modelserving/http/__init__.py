"""REST's HTTP plumbing: auth, error bodies, ASGI middleware, bodies, docs, early admission."""
