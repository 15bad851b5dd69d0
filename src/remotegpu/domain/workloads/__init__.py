"""Workloads context: batch training jobs (multi-node, gang-scheduled).

``models``: the job aggregate and its lifecycle; ``gang``: all-or-nothing placement of
a job's nodes and the job queue (priority, backfill, aging).
"""
