"""Platform plumbing: health and readiness, metrics, and the worker round-trip ping."""
