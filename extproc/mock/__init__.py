"""A mock LLM provider for tests, benchmarks and demos.

It speaks each provider's wire format (JSON and SSE), decides what to answer with a small
deterministic engine, records every request it receives, and injects failures on demand.
See `server.py` for the control headers and the `/_mock` admin API.
"""
