"""Which paths the route filter treats as chat completions (extproc/paths.py)."""

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.errors import GatewayError
from extproc.paths import CHAT_SUFFIX, check_chat_path, is_chat_path

ACCEPTED = [
    "/v1/chat/completions",
    "/v1/chat/completions?api-version=2024-10-21",
    "/v1/chat/completions?",
    "/openai/v1/chat/completions",  # envoy/examples/path-routing.yaml
    "/pii/v1/chat/completions",  # envoy/policies.yaml
    "/chat/completions",
    "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
    "/v1/chat/completions?next=/v1/embeddings;x=%2F",  # the query string is not the path
]

REFUSED = [
    "",
    "chat/completions",  # not absolute
    "/v1/chat/completions/",  # trailing slash
    "/v1/chat/completions/.",
    "/v1//chat/completions",  # left if Envoy did not merge slashes
    "/v1/./chat/completions",
    "/v1/x/../chat/completions",
    "/v1/chat/completions;x=1",  # Envoy keeps ;params
    "/v1/chat;x/completions",
    "/v1/chat/completions%00",
    "/v1/chat%2Fcompletions",
    "/v1/chat/%63ompletions",  # left if Envoy did not normalise
    "/v1/chat/completions%20",
    "/v1\\chat\\completions",
    "/V1/CHAT/COMPLETIONS",
    "/v1/Chat/Completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/chat/completions.json",
    "/v1/chat/completionsx",
    "/v1/xchat/completions",
    "/v1/chat/completions#x",
    "/v1/chat/completions\x00",
    "/v1/ch\u0430t/completions",  # Cyrillic a
    "/v1 /chat/completions",
]


@pytest.mark.parametrize("path", ACCEPTED)
def test_chat_completion_paths_are_accepted(path):
    assert is_chat_path(path)
    check_chat_path(path)


@pytest.mark.parametrize("path", REFUSED)
def test_other_paths_get_an_openai_shaped_404(path):
    assert not is_chat_path(path)
    with pytest.raises(GatewayError) as exc:
        check_chat_path(path)
    err = exc.value
    assert err.status == 404
    body = orjson.loads(err.body())["error"]
    assert body["code"] == "unknown_url" and body["type"] == "invalid_request_error"
    assert body["param"] is None and "chat completions" in body["message"]


def test_the_quoted_path_is_bounded():
    with pytest.raises(GatewayError) as exc:
        check_chat_path("/x" * 5000)
    assert len(exc.value.message) < 400


_SEGMENT = st.text(st.characters(codec="utf-8"), max_size=8)


@given(st.lists(_SEGMENT, max_size=5), st.text(max_size=10))
def test_only_paths_ending_in_the_chat_endpoint_pass(segments, query):
    path = "/" + "/".join(segments) + ("?" + query if query else "")
    if is_chat_path(path):
        raw = path.partition("?")[0]
        assert raw.endswith(CHAT_SUFFIX)
        assert not set(raw) & set(";%\\#") and raw.isascii() and raw.isprintable()
        assert "//" not in raw and "/./" not in raw and "/../" not in raw


@given(
    st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=8).filter(
            lambda s: s not in (".", "..")
        ),
        max_size=4,
    ),
    st.text(max_size=20),
)
def test_plain_prefixes_before_the_chat_endpoint_pass(prefix, query):
    path = "".join("/" + s for s in prefix) + CHAT_SUFFIX + ("?" + query if query else "")
    assert is_chat_path(path)
