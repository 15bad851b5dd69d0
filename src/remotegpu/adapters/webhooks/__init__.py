"""Webhook adapters: the SSRF-safe HTTP sender and the delivery stores."""
