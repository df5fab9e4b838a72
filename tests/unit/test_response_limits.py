"""How large a JSON answer the gateway reads whole (extproc/response_limits.py)."""

from extproc.response_limits import ENVOY_DEFAULT_BUFFER, buffer_limit, declared_too_large, read_too_large
from extproc.runtime.bootstrap import build_config
from tests.harness import load_bootstrap


def test_the_limit_is_the_smallest_buffer_a_response_passes_through():
    doc = {
        "static_resources": {
            "listeners": [
                {"name": "a", "per_connection_buffer_limit_bytes": 8 << 20},
                {"name": "b", "per_connection_buffer_limit_bytes": {"value": 6 << 20}},
            ],
            "clusters": [
                {"name": "llm", "per_connection_buffer_limit_bytes": 5 << 20},
                {"name": "extproc"},  # not an AI cluster: its buffer does not matter
                {"name": "other-ai"},
            ],
        }
    }
    assert buffer_limit(doc, {"llm"}) == 5 << 20
    # Unset means Envoy's default, 1 MiB.
    assert buffer_limit(doc, {"llm", "other-ai"}) == ENVOY_DEFAULT_BUFFER
    assert buffer_limit({}, set()) == ENVOY_DEFAULT_BUFFER


def test_the_shipped_bootstraps_read_8_mib_answers():
    assert build_config(load_bootstrap("mock.yaml")).max_response_bytes == 8 << 20
    assert build_config(load_bootstrap("failover.yaml")).max_response_bytes == 8 << 20


def test_too_large_by_declaration_or_as_read():
    assert declared_too_large({"content-length": "100"}, 100) is None
    assert declared_too_large({}, 100) is None
    err = declared_too_large({"content-length": "101"}, 100)
    assert err is not None
    assert (err.status, err.code) == (502, "response_too_large") and "101 bytes" in err.message
    assert read_too_large(b"x" * 100, True, 100) is None
    past = read_too_large(b"x" * 101, True, 100)  # read past the buffer
    assert past is not None and past.code == "response_too_large"
    err = read_too_large(b"x" * 50, False, 100)  # cut: Envoy's buffer was full
    assert err is not None
    assert err.code == "response_too_large" and "more than 50 bytes" in err.message
    assert err.type == "server_error"
