"""Webhook endpoints and deliveries: registration, fan-out, retries."""
