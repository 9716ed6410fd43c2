"""Pure pricing: the LLM price table and the reservation estimate of an LLM call. No I/O."""

from outlay.pricing.estimate import Estimate, estimate
from outlay.pricing.table import ModelPrice, PriceTable
from outlay.pricing.usage import ROUTES, cost_of, usage_cost

__all__ = [
    "ROUTES",
    "Estimate",
    "ModelPrice",
    "PriceTable",
    "cost_of",
    "estimate",
    "usage_cost",
]
