"""Money: integer minor units (cents, fen), never floats.

The one rounding rule: a usage segment's amount is
``quantity × unit_price × seconds / period_seconds`` computed exactly (integers), then
rounded **once, half up, to the minor unit** (``rate``). A segment rated while still
open is rated again from its start each time (never from a previous rounded value), and
what the ledger is charged is the difference between two such roundings: the charges of
a segment therefore add up exactly to the rounding of its whole amount.
"""

from __future__ import annotations


def rate(quantity: int, unit_price: int, seconds: int, period_seconds: int) -> int:
    """``round_half_up(quantity × unit_price × seconds / period_seconds)`` in minor units."""
    if quantity < 0 or unit_price < 0 or seconds < 0 or period_seconds <= 0:
        raise ValueError("rate takes non-negative quantity, price and duration and a positive period")
    numerator = quantity * unit_price * seconds
    return (2 * numerator + period_seconds) // (2 * period_seconds)


def format_minor(amount: int, currency: str = "CNY") -> str:
    """``-1234`` → ``"-12.34 CNY"`` (two decimals: every supported currency has cents)."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d} {currency}"


def parse_minor(text: str) -> int:
    """``"12.34"`` → ``1234``; at most two decimals, no exponent, no float on the way."""
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and (not frac.isdigit() or len(frac) > 2)):
        raise ValueError(f"not an amount with at most two decimals: {text!r}")
    return sign * (int(whole) * 100 + int((frac + "00")[:2]))
