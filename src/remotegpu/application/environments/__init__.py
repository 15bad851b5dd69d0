"""Environments: use cases and the ports they drive (runtimes, access gateways)."""
