"""The notifications context: events become messages; inbox, email, preferences."""
