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
# On an upstream response, tells Envoy's router to mark the host failed at once instead of
# waiting for its next active health check (the upstream filter sets it on a 429; it needs
# `allow_envoy` in the filter's mutation_rules, and the renderer strips it before clients).
IMMEDIATE_HC_FAIL = "x-envoy-immediate-health-check-fail"
