"""Which request paths the gateway treats as chat completions.

Every AI route translates what it receives into a chat-completions call for whichever
provider Envoy picked (the upstream filter rewrites `:path` per provider). A route that
matches more than the chat-completions endpoint (a `PathPrefix /v1`, say) would therefore
turn `/v1/embeddings`, `/v1/chat/completions/` or `/v1/Chat/Completions` into a chat
completion, under that route's policy rather than the one of the route the client was
really asking for. So the route filter accepts a path only when it plainly names the
chat-completions endpoint, and answers 404 otherwise.

The check runs on the path Envoy already normalised (`normalize_path`, `merge_slashes`,
escaped slashes rejected: the wiring checks refuse a bootstrap without them), so what is
left that is not plain is a client trying something: it is refused, not repaired.
"""

from __future__ import annotations

import string

from .errors import GatewayError

CHAT_SUFFIX = "/chat/completions"

# RFC 3986 path characters without ';' (Envoy keeps `;params` in the path and providers
# may read them), '%' (no escapes survive Envoy's normalisation unless they stand for
# something odd: a space, a NUL, a non-ASCII byte) and '\' (Envoy turns it into '/').
_PLAIN = frozenset(string.ascii_letters + string.digits + "-._~" + "!$&'()*+,=" + ":@" + "/")
_SHOWN = 200  # characters of the client's path quoted in the error


def is_chat_path(path: str) -> bool:
    """`path` (query string allowed) names the chat-completions endpoint: it ends in
    `/chat/completions`, case-sensitively, and is plain (no `;`, `%`, `\\`, empty, `.` or
    `..` segments, no characters outside RFC 3986's path set)."""
    raw = path.partition("?")[0]
    if not raw.startswith("/") or not raw.endswith(CHAT_SUFFIX):
        return False
    if not _PLAIN.issuperset(raw):
        return False
    segments = raw[1:].split("/")
    return all(s not in ("", ".", "..") for s in segments)


def check_chat_path(path: str) -> None:
    """Raise a 404 in OpenAI's shape unless `path` is a chat-completions path."""
    if is_chat_path(path):
        return
    shown = path if len(path) <= _SHOWN else path[:_SHOWN] + "..."
    raise GatewayError(
        404,
        f"Invalid URL ({shown}): this gateway serves chat completions only, "
        f"at a path ending in {CHAT_SUFFIX}",
        code="unknown_url",
        type_="invalid_request_error",
    )
