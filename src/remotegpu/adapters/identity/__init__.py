"""Identity adapters: external directories and identity providers."""
