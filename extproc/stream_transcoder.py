"""Bytes of a provider's SSE stream in, bytes of an OpenAI chat-completion stream out.

Glue between the incremental SSE parser and a provider's StreamTranslator: the parser
copes with arbitrary chunking, the translator with the provider's event semantics, and
this class with framing (`data: {json}` per chunk, a single `data: [DONE]` at the end,
an error event followed by `[DONE]` when the provider reports an error mid-stream).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from .providers.base import ProviderError, StreamTranslator, error_dict
from .sse import DONE, SSEParser

log = logging.getLogger("aigw.upstream")


class StreamTranscoder:
    __slots__ = ("_parser", "_translator", "done")

    def __init__(self, translator: StreamTranslator) -> None:
        self._parser = SSEParser()
        self._translator = translator
        self.done = False

    def feed(self, data: bytes, end_of_stream: bool) -> bytes:
        if self.done:
            return b""
        out: list[bytes] = []
        # An oversized event ends the stream, but the whole events before it still go out.
        events, too_large = self._parser.read(data, end_of_stream)
        try:
            for event in events:
                self._emit(self._translator.on_event(event), out)
                if self.done:
                    return b"".join(out)
            if too_large is not None:
                raise too_large
            if end_of_stream:
                self._emit(self._translator.on_end(), out)
                if not self.done:
                    out.append(DONE)
                    self.done = True
        except (ProviderError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # A stream the translator cannot follow ends with an error the client can see,
            # never with silently truncated or untranslated output. The exception text may
            # quote provider data, so it goes to the log, not to the client.
            log.warning("untranslatable provider stream", extra={"fields": {"error": repr(exc)[:200]}})
            self._emit(
                [
                    error_dict(
                        502, "the provider's stream could not be translated", code="upstream_invalid_stream"
                    )
                ],
                out,
            )
        return b"".join(out)

    def _emit(self, chunks: list[dict[str, Any]], out: list[bytes]) -> None:
        for chunk in chunks:
            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if "error" in chunk and "choices" not in chunk:
                out.append(DONE)
                self.done = True
                return
