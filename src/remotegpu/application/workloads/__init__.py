"""Workloads use cases: training jobs (create, queue, gang placement, lifecycle, logs)."""
