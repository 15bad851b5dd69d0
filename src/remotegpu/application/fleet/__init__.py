"""Fleet use cases and ports."""
