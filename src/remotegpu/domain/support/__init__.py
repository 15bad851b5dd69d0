"""Support: tickets, their conversation, workflow and service-level targets."""
