"""Notifications: what happened, to whom, in which language, on which channels."""
