"""Billing use cases: metering and rating, wallets, pay-as-you-go checks and arrears, bills."""
