"""RemoteGPU: a self-hosted GPU cloud (hexagonal modular monolith)."""

__version__ = "0.1.0"
