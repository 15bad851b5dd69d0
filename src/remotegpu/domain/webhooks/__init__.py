"""Webhooks: endpoints, Standard Webhooks signing, delivery schedule, address policy."""
