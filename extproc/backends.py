"""A backend at run time: validated settings, its provider's translator and its secret."""

from __future__ import annotations

from .config.secrets import Secret
from .providers.base import BackendSettings, Credential, Provider

# Every header a client might use to carry a provider credential. All are removed from
# every upstream request; the one the backend needs is then set by the gateway.
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
# Never forwarded: compression would hide bodies from the gateway's parsers (Envoy can
# compress towards the client), and cookies or proxy credentials are the client's own.
CLIENT_ONLY_HEADERS = ("accept-encoding", "cookie", "proxy-authorization")
# Choose the account billed. With the gateway's credential, the backend's settings decide,
# not the client; with passthrough, the client's own account is the client's business.
ACCOUNT_HEADERS = ("openai-organization", "openai-project", "x-goog-user-project")


class Backend:
    __slots__ = ("name", "cluster", "settings", "provider", "secret", "_header", "_prefix",
                 "headers")

    def __init__(self, name: str, cluster: str, settings: BackendSettings, provider: Provider,
                 secret: Secret | None) -> None:
        self.name = name
        self.cluster = cluster
        self.settings = settings
        self.provider = provider
        self.secret = secret
        auth = settings.auth
        self._header = (auth.header if auth and auth.header else provider.auth_header)
        self._prefix = (auth.prefix if auth and auth.prefix is not None else provider.auth_prefix)
        # Static headers computed once: provider extras plus the Host override.
        headers = dict(provider.extra_headers())
        authority = settings.authority or provider.default_authority
        if authority:
            headers[":authority"] = authority
        self.headers = headers

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
