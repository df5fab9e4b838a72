"""Header names the gateway's two filter positions use to talk to each other.

The upstream filter reports on each attempt through response headers; the route-level
filter reads and removes them before the client sees the response. Clients cannot inject
them: the route-level filter strips every `x-aigw-` header from incoming requests.
"""

PREFIX = "x-aigw-"
BACKEND = "x-aigw-backend"
PROVIDER = "x-aigw-provider"
ATTEMPT = "x-aigw-attempt"
# Envoy's attempt counter, sent upstream when the virtual host sets include_request_attempt_count.
ENVOY_ATTEMPT = "x-envoy-attempt-count"
REQUEST_ID = "x-request-id"
