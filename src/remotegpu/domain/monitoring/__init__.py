"""Monitoring: metric samples, their aggregates, and alert rules (pure rules, no I/O)."""
