"""Pure policy core: policies, money, windows, periods, decisions. No I/O, no async."""
