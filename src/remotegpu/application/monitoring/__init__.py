"""Monitoring use cases: collection on the agent, ingestion, queries, alert evaluation."""
