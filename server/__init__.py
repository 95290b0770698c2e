"""spark-serve sidecar: liveness, readiness, status and metrics."""
