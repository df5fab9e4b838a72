"""The reply builders: every reply names its phase, even when it changes nothing (a reply
whose oneof is unset is a protocol error to Envoy), and carries exactly what it was given."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from extproc import messages as msg

BUILDERS = {
    "request_headers": msg.request_headers,
    "request_body": msg.request_body,
    "response_headers": msg.response_headers,
    "response_body": msg.response_body,
}


@pytest.mark.parametrize("phase", BUILDERS)
def test_an_empty_reply_still_answers_its_phase(phase):
    reply = BUILDERS[phase]()
    assert reply.WhichOneof("response") == phase
    common = getattr(reply, phase).response
    assert getattr(reply, phase).HasField("response")
    assert not common.HasField("header_mutation") and not common.HasField("body_mutation")
    assert not reply.HasField("mode_override")


@pytest.mark.parametrize("phase", BUILDERS)
def test_a_reply_carries_headers_removals_and_body_in_order(phase):
    reply = BUILDERS[phase](
        set_headers={":path": "/v1/messages", "x-api-key": "k"}, remove=["authorization", "x-b"], body=b"{}"
    )
    common = getattr(reply, phase).response
    sets = [(h.header.key, h.header.raw_value, h.append_action) for h in common.header_mutation.set_headers]
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert sets == [(":path", b"/v1/messages", overwrite), ("x-api-key", b"k", overwrite)]
    assert list(common.header_mutation.remove_headers) == ["authorization", "x-b"]
    assert common.body_mutation.body == b"{}"
    assert not common.clear_route_cache


def test_an_empty_body_is_still_a_body_mutation():
    """Clearing a streamed chunk is a mutation to the empty body, not "no change"."""
    for reply in (msg.streamed_body(b""), msg.response_body(body=b"")):
        assert reply.response_body.response.HasField("body_mutation")
        assert reply.response_body.response.body_mutation.body == b""


def test_removals_alone_make_a_header_mutation():
    reply = msg.request_headers(remove=["x-aigw-backend"])
    assert list(reply.request_headers.response.header_mutation.remove_headers) == ["x-aigw-backend"]
    assert not reply.request_headers.response.header_mutation.set_headers


def test_response_headers_mode_override_and_replace():
    reply = msg.response_headers(body_mode=msg.STREAMED)
    assert reply.mode_override.response_body_mode == msg.STREAMED
    assert reply.WhichOneof("response") == "response_headers"
    replaced = msg.replace_response({"content-length": "2"}, b"{}")
    assert replaced.response_headers.response.status == pb.CommonResponse.CONTINUE_AND_REPLACE
    assert replaced.response_headers.response.body_mutation.body == b"{}"


def test_route_cache_clearing_is_passed_on():
    assert msg.request_body(clear_route_cache=True).request_body.response.clear_route_cache
