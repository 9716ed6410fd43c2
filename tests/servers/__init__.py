"""Throwaway database servers for the tests: each started on a free loopback port in a
temporary directory, stopped when the session ends; never the machine's own services."""
