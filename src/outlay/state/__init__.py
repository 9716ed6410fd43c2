"""Where the gateway keeps its counters, reservations, keys, policies, ledger and outbox: one
Protocol (`base.py`), one package per backend, chosen by URL in `open.py`."""
