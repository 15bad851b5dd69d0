"""Secret environment variables: write-only, encrypted at rest.

Users hand a secret variable's value over once (on create); from then on the platform
keeps only what a ``SecretSealer`` sealed, shows the name only, and opens it for exactly
one purpose: the runtime spec the environment's host agent starts the container with.

A sealed value is bound to its environment and its name (associated data), so a value
copied to another row or renamed does not open. The adapter
(``remotegpu.adapters.security.sealer``) derives its key from the server's secret
key: changing that key makes stored secrets unreadable (their environments then start
without them, with a warning in the server log naming the variable, never its value).
"""

from __future__ import annotations

import logging

from remotegpu.application.shared.sealing import SealBroken, SecretSealer

log = logging.getLogger("remotegpu.environments.secrets")


def _context(env_id: str, name: str) -> str:
    return f"environment/{env_id}/variable/{name}"


def seal_variables(box: SecretSealer, env_id: str, values: dict[str, str]) -> dict[str, str]:
    return {name: box.seal(value.encode(), context=_context(env_id, name)) for name, value in values.items()}


def open_variables(box: SecretSealer | None, env_id: str, sealed: dict[str, str]) -> dict[str, str]:
    """Plaintext values for the runtime spec; a value that does not open is left out."""
    if box is None or not sealed:
        return {}
    opened = {}
    for name, token in sealed.items():
        try:
            opened[name] = box.open(token, context=_context(env_id, name)).decode()
        except (SealBroken, UnicodeDecodeError):
            log.warning("secret variable cannot be decrypted (was the server's secret key changed?); started without it",
                        extra={"environment_id": env_id, "variable": name})
    return opened
