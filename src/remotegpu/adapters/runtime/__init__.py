"""EnvironmentRuntime adapters: in-memory (tests) and Docker.

``docker_runtime`` imports the docker SDK; import it only where Docker is wanted.
"""

from remotegpu.adapters.runtime.memory import InMemoryRuntime

__all__ = ["InMemoryRuntime"]
