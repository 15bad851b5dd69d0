"""Ticket repositories: in memory (tests) and SQL (SQLite, PostgreSQL)."""
