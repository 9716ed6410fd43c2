"""Outlay: a gateway that enforces rate limits and USD budgets before AI agents call paid APIs."""

__version__ = "0.1.0"

__all__ = ["__version__"]
