"""Webhooks (SPEC §5): the events, their signing, the retry schedule and the delivery worker."""
