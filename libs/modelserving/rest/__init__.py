"""The REST transport: the app, its typed routes and health, and the protocol's REST routes."""
