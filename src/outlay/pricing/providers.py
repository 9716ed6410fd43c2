"""The price of a call on a named provider (SPEC §3.1): the table's `<provider>/<model>`
entry, or the plain entry on OpenAI and Anthropic; an Azure OpenAI deployment at OpenAI's
list price of its model unless the table prices it; nothing on a `free` provider."""

from __future__ import annotations

from dataclasses import replace

from outlay.pricing.table import ModelPrice, PriceTable

# the bounds of a model on a free provider that the table does not list: the output a
# request that names none may ask for, and the input it reads (they bound token rate limits)
FREE_MAX_OUTPUT_TOKENS = 4096
FREE_CONTEXT_WINDOW = 128_000


def provider_price(table: PriceTable, provider: str, model: str, price_key: str, *,
                   azure: bool = False, free: bool = False) -> ModelPrice | None:
    """The price of `model` sent to `provider` (`price_key`: its name in the table); None
    when it is unknown."""
    found = table.resolve(price_key)
    if found is not None and found.provider != provider:
        found = None  # a name of another provider's model: not what this call costs
    if found is None and azure:
        # Azure OpenAI's global deployments bill OpenAI's list prices
        base = table.resolve(model)
        if base is not None and base.provider == "openai":
            found = replace(base, provider=provider)
    if free:
        if found is None:
            return ModelPrice(price_key, provider, 0, 0, 0, FREE_MAX_OUTPUT_TOKENS,
                              FREE_CONTEXT_WINDOW, free=True)
        return replace(found, free=True)
    return found
