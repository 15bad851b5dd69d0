"""The support context: tickets, replies and internal notes, the support team, SLA and automations."""
