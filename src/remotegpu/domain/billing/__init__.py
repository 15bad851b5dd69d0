"""Billing: prices, metering (usage segments), rating, wallets' ledgers, bills.

Pure rules only (no I/O). Money is integer minor units (cents, fen) everywhere; the one
rounding rule is ``money.rate`` (half up, once per segment).
"""
