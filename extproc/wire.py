"""Every name the gateway shares with Envoy or between its two filter positions, in one place.

Headers, metadata namespaces, attribute names and type URLs are a wire contract: the
renderer writes them into bootstraps, the start-up checks look for them, and the filters
read them at request time. A name spelled twice drifts; here each is spelled once.
"""

# ---- headers between the two filter positions -------------------------------------------
# The upstream filter reports on each attempt through response headers; the route-level
# filter reads and removes them before the client sees the response. Clients cannot inject
# them: the route-level filter strips every `x-aigw-` header from incoming requests.
PREFIX = "x-aigw-"
BACKEND = "x-aigw-backend"
PROVIDER = "x-aigw-provider"
ATTEMPT = "x-aigw-attempt"
# gRPC initial metadata on each ext_proc filter: which position a stream comes from
# (`route` or `upstream`), so one processor socket serves both.
PHASE = "x-aigw-phase"
PHASE_ROUTE, PHASE_UPSTREAM = "route", "upstream"

# The Gateway API Inference Extension's endpoint-picker contract: the picker names the
# endpoints for a request ("ip:port,ip:port", the first preferred, the rest tried in turn
# by retries); the pool's cluster routes by it with the override-host LB policy.
DESTINATION_ENDPOINT = "x-gateway-destination-endpoint"

# ---- Envoy's headers --------------------------------------------------------------------
# Envoy's attempt counter, sent upstream when the virtual host sets include_request_attempt_count.
ENVOY_ATTEMPT = "x-envoy-attempt-count"
REQUEST_ID = "x-request-id"
# On an upstream response, tells Envoy's router to mark the host failed at once instead of
# waiting for its next active health check (the upstream filter sets it on a 429; it needs
# `allow_envoy` in the filter's mutation_rules, and the renderer strips it before clients).
IMMEDIATE_HC_FAIL = "x-envoy-immediate-health-check-fail"

# ---- metadata -------------------------------------------------------------------------
# The namespace of the gateway's metadata everywhere: a route's policy and an endpoint's
# backend settings (filter_metadata), and the dynamic metadata the route-level filter
# emits for access logs (`%DYNAMIC_METADATA(aigw:total_tokens)%`).
NAMESPACE = "aigw"

# Envoy's response code details on the processor's own immediate replies start with this,
# so the renderer's access-log and local-reply rules can tell them from Envoy's.
REPLY_DETAILS = "aigw"

# ---- attributes the filters ask Envoy for ---------------------------------------------------
ROUTE_NAME = "xds.route_name"
CLUSTER_NAME = "xds.cluster_name"
UPSTREAM_HOST_METADATA = "xds.upstream_host_metadata"
UPSTREAM_ADDRESS = "upstream.address"
# The client's address (ip:port), for charging a token budget keyed by client address.
SOURCE_ADDRESS = "source.address"

# ---- type URLs and extension names ------------------------------------------------------
_TYPE = "type.googleapis.com/"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_OPTIONS_TYPE = _TYPE + HTTP_OPTIONS
EXT_PROC = "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
EXT_PROC_TYPE = _TYPE + EXT_PROC
EXT_PROC_PER_ROUTE = "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
EXT_PROC_PER_ROUTE_TYPE = _TYPE + EXT_PROC_PER_ROUTE
LOCAL_RATELIMIT_TYPE = _TYPE + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
CEL_FILTER_TYPE = _TYPE + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"
UPSTREAM_CODEC_TYPE = _TYPE + "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
PREVIOUS_HOSTS_TYPE = _TYPE + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
PREVIOUS_PRIORITIES_TYPE = (
    _TYPE + "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig"
)
OVERRIDE_HOST = "envoy.load_balancing_policies.override_host"
OVERRIDE_HOST_TYPE = _TYPE + "envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost"
ROUND_ROBIN = "envoy.load_balancing_policies.round_robin"
ROUND_ROBIN_TYPE = _TYPE + "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin"
HCM_TYPE = _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

# ---- shared state (Redis): global rate limits and token budgets --------------------------
RATELIMIT_TYPE = _TYPE + "envoy.extensions.filters.http.ratelimit.v3.RateLimit"
RATELIMIT_PER_ROUTE_TYPE = _TYPE + "envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute"
HEADER_TO_METADATA_TYPE = _TYPE + "envoy.extensions.filters.http.header_to_metadata.v3.Config"
# Envoy's rate-limit filter; each route names its descriptors under it.
RATELIMIT_FILTER = "aigw.ratelimit"
RATELIMIT_DOMAIN = "aigw"
# The first entry of every descriptor the gateway renders: which limit it counts for (a
# key of `rateLimits` in the node metadata the processor's rate-limit service reads).
LIMIT_ENTRY = "aigw_limit"
# The entries after it that name the client: a key header's value, copied into dynamic
# metadata under RATELIMIT_KEYS (requests without it: NO_CLIENT_KEY), the client's
# address (Envoy's own entry key for it), or one bucket for everyone.
CLIENT_KEY_ENTRY = "client_key"
NO_CLIENT_KEY = "(none)"
REMOTE_ADDRESS_ENTRY = "remote_address"
GENERIC_KEY_ENTRY = "generic_key"
RATELIMIT_KEYS = "aigw.ratelimit"
# The rate-limit service adds this header to a refusal: `requests` or `tokens`, so the
# local reply can say which limit it was.
LIMITED_BY = "x-aigw-limited-by"
