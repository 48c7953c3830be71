"""Container tests: every service image run as Kubernetes would run it."""
