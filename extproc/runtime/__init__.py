"""The compiled gateway: what the filters use at request time.

`bootstrap.py` reads the Envoy bootstrap, validates the gateway's settings in it with the
models in `config/` (pure data) and compiles them: routes with their guard pipelines,
backends with their provider translators and credentials, the host cache and backend
health (`gateway.py`). Nothing here is parsed per request.
"""
