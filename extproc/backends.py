"""A backend at run time: validated settings, its provider's translator and its secret."""

from __future__ import annotations

from typing import Any

from .providers.base import BackendSettings, Credential, Provider
from .secrets import Secret

# Every header a client might use to carry a provider credential. All are removed from
# every upstream request; the one the backend needs is then set by the gateway.
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
# Never forwarded: compression would hide bodies from the gateway's parsers (Envoy can
# compress towards the client), and cookies or proxy credentials are the client's own.
CLIENT_ONLY_HEADERS = ("accept-encoding", "cookie", "proxy-authorization")
# Choose the account billed. With the gateway's credential, the backend's settings decide,
# not the client; with passthrough, the client's own account is the client's business.
ACCOUNT_HEADERS = ("openai-organization", "openai-project", "x-goog-user-project")
# With the gateway's credential the request is the gateway's: of the client's headers a
# provider gets only these (and the backend's `allowHeaders`). Anything else could opt
# the shared account into features or pricing (`anthropic-beta`, `openai-beta`) or carry
# what the client wants the provider to see. What remains describes the request itself
# (content-type, accept; user-agent, which providers use to tell clients apart when
# debugging) or correlates it with the gateway's logs (Envoy's request id and attempt).
# The provider's own headers (`anthropic-version`, the credential) are set afterwards.
FORWARDED_HEADERS = frozenset(
    {"content-type", "content-length", "accept", "user-agent", "x-request-id", "x-envoy-attempt-count"}
)
# The client's address, true or claimed: never sent to a provider, whatever the auth mode,
# unless the backend lists it (a self-hosted server that logs it, say). The provider sees
# the gateway as its client.
ADDRESS_HEADERS = frozenset(
    {
        "x-forwarded-for",
        "x-real-ip",
        "x-envoy-external-address",
        "forwarded",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-cluster-client-ip",
        "fastly-client-ip",
        "x-original-forwarded-for",
    }
)


class HeaderPolicy:
    """Which client request headers an attempt drops before it reaches the provider."""

    __slots__ = ("_allow_only", "_names", "_prefixes")

    def __init__(self, allow: tuple[str, ...], allow_only: bool) -> None:
        self._names = frozenset(a for a in allow if not a.endswith("*"))
        self._prefixes = tuple(a[:-1] for a in allow if a.endswith("*"))
        # True: everything not allowed is dropped. False: only address headers are.
        self._allow_only = allow_only

    def _allowed(self, name: str) -> bool:
        return name in self._names or name.startswith(self._prefixes)

    def dropped(self, names) -> list[str]:
        """The names (of `names`, a request's headers) to remove. Pseudo-headers and
        `host` are Envoy's to set; credentials and the like are handled separately."""
        out = []
        for name in names:
            if name[:1] == ":" or name == "host" or self._allowed(name):
                continue
            if name in ADDRESS_HEADERS or (self._allow_only and name not in FORWARDED_HEADERS):
                out.append(name)
        return out


class Backend:
    __slots__ = (
        "_header",
        "_prefix",
        "cluster",
        "header_policy",
        "headers",
        "name",
        "provider",
        "secret",
        "settings",
    )

    def __init__(
        self,
        name: str,
        cluster: str,
        settings: BackendSettings,
        provider: Provider[Any],
        secret: Secret | None,
    ) -> None:
        self.name = name
        self.cluster = cluster
        self.settings = settings
        self.provider = provider
        self.secret = secret
        auth = settings.auth
        self._header = auth.header if auth and auth.header else provider.auth_header
        self._prefix = auth.prefix if auth and auth.prefix is not None else provider.auth_prefix
        # Static headers computed once: provider extras plus the Host override.
        headers = dict(provider.extra_headers())
        authority = settings.authority or provider.default_authority
        if authority:
            headers[":authority"] = authority
        self.headers = headers
        # Allow-list only under the gateway's own credential: with passthrough (or none)
        # the client speaks for itself, and only its address is withheld.
        injected = bool(auth and auth.secret_ref is not None)
        self.header_policy = HeaderPolicy(settings.allow_headers, allow_only=injected)

    @property
    def passthrough(self) -> bool:
        return bool(self.settings.auth and self.settings.auth.passthrough)

    def credential(self, client_key: str | None) -> Credential | None:
        """The credential to send on this attempt, or None to send none."""
        if self.secret is not None:
            return Credential(self._header, self._prefix + self.secret.value)
        if self.passthrough and client_key:
            return Credential(self._header, self._prefix + client_key)
        return None

    def __repr__(self) -> str:
        return f"Backend({self.name}, provider={self.provider.name})"


def client_key(headers: dict[str, str]) -> str | None:
    """The API key a client sent, in whichever of the common headers it used."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    for name in ("api-key", "x-api-key", "x-goog-api-key"):
        if headers.get(name):
            return headers[name]
    return None
