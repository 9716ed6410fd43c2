"""Pure pricing: the LLM price table and the reservation estimate of an LLM call. No I/O."""

from outlay.pricing.estimate import ROUTES, Estimate, cost_of, estimate, usage_cost
from outlay.pricing.table import ModelPrice, PriceTable

__all__ = [
    "ROUTES",
    "Estimate",
    "ModelPrice",
    "PriceTable",
    "cost_of",
    "estimate",
    "usage_cost",
]
