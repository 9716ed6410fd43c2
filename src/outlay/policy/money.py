"""Money as exact integers: micro-USD (1 USD = 1_000_000). Charges round up."""

from __future__ import annotations

from decimal import MAX_EMAX, MIN_EMIN, ROUND_CEILING, Decimal, InvalidOperation, localcontext

MICROS_PER_USD = 1_000_000
# Keeps every amount, and any realistic sum of them, inside a signed 64-bit integer (the
# SQLite INTEGER the stores keep micro-USD in) and bounds the work a parsed amount can cost.
MAX_USD = 10**12


def usd_to_micros(value: object) -> int:
    """Parse a USD amount (str, int, float, Decimal) into micro-USD, rounding up.

    Floats are read through their shortest repr so that ``0.1`` means 100_000 micro-USD.
    Raises ValueError for anything that is not a finite, non-negative amount up to MAX_USD.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a USD amount: {value!r}")
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a USD amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"USD amount must be a finite, non-negative number: {value!r}")
    if amount > MAX_USD:
        raise ValueError(f"USD amount above the largest supported ({MAX_USD}): {value!r}")
    with localcontext() as ctx:
        # exact scaling: the default 28 digits would round a long amount, possibly down
        ctx.prec = len(amount.as_tuple().digits) + 7
        ctx.Emin, ctx.Emax = MIN_EMIN, MAX_EMAX
        return int((amount * MICROS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def micros_to_usd(micros: int) -> str:
    """Render micro-USD as an exact decimal string, e.g. 1_500 -> '0.0015'."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}".rstrip("0")


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding towards +infinity (for non-negative operands)."""
    return -(-numerator // denominator)
