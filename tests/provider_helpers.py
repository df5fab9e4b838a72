"""Shared helpers for provider translator tests (golden files and chunking properties)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import orjson

from extproc.providers import PROVIDERS, backend_settings_adapter
from extproc.providers.base import Provider
from extproc.sse import SSEParser
from extproc.stream_transcoder import StreamTranscoder

GOLDEN = Path(__file__).parent / "golden"


def make_provider(settings: dict[str, Any]) -> Provider:
    """A provider instance from endpoint-metadata-shaped settings."""
    parsed = backend_settings_adapter.validate_python(settings)
    return PROVIDERS[parsed.provider](parsed)


def golden(provider: str, name: str) -> Any:
    """Load tests/golden/<provider>/<name>: JSON files parsed, others as bytes."""
    path = GOLDEN / provider / name
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return path.read_bytes()


def transcode(provider: Provider, model: str, stream: bytes, cuts: list[int] | None = None) -> bytes:
    """Run a provider SSE byte stream through the upstream transcoder, delivered in the
    pieces that `cuts` (byte offsets) make, or in one piece."""
    tc = StreamTranscoder(provider.stream_translator(model))
    offsets = sorted({c for c in (cuts or []) if 0 < c < len(stream)})
    bounds = [0, *offsets, len(stream)]
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    out = []
    for i, piece in enumerate(pieces):
        out.append(tc.feed(piece, i == len(pieces) - 1))
    return b"".join(out)


def chunks_of(sse: bytes) -> list[Any]:
    """The data payloads of an OpenAI SSE stream: parsed JSON dicts, and the string
    "[DONE]" for the terminator."""
    parser = SSEParser()
    events = parser.feed(sse) + parser.close()
    out: list[Any] = []
    for ev in events:
        if not ev.has_data:
            continue
        out.append("[DONE]" if ev.data == "[DONE]" else orjson.loads(ev.data))
    return out


def normalise(doc: Any) -> Any:
    """Replace run-time values (generated ids, timestamps) so goldens compare stably."""
    if isinstance(doc, list):
        return [normalise(d) for d in doc]
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k == "created" and isinstance(v, int):
                out[k] = 0
            elif k == "id" and isinstance(v, str) and v.startswith("chatcmpl-"):
                out[k] = "chatcmpl-X"
            else:
                out[k] = normalise(v)
        return out
    return doc


def assert_valid_openai_stream(chunks: list[Any]) -> None:
    """Structural checks every translated stream must pass."""
    assert chunks and chunks[-1] == "[DONE]", "stream must end with [DONE]"
    assert chunks.count("[DONE]") == 1
    for c in chunks[:-1]:
        if "error" in c:
            assert set(c["error"]) >= {"message", "type"}
            continue
        assert c["object"] == "chat.completion.chunk"
        assert isinstance(c["id"], str) and isinstance(c["created"], int) and isinstance(c["model"], str)
        for choice in c["choices"]:
            assert set(choice) >= {"index", "delta", "finish_reason"}
