"""Text documents sent as base64 media: read by the guards as the text they are.

A content part may carry a file as a base64 data URL (`file.file_data`, or an
`image_url.url`). Images, audio and PDFs are bytes the guards cannot read, but a
`text/plain`, CSV, JSON or source file is text: Gemini and Vertex AI take it inline, and
the model reads every character. Skipped as media, such a file would carry anything past
a guard. So a text document is decoded and guarded like any other text; a masked one is
encoded back in its place. One the guards cannot read (not base64, not UTF-8, another
charset) is refused on a guarded route rather than passed on unread.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from typing import Any

from ..errors import GatewayError
from .slot_writers import TEXT

# Base64 media: bytes, not text (text_slots.py skips them unless they are a text document).
_BASE64 = re.compile(r"[A-Za-z0-9+/=_\-\r\n]+")
_DATA_BASE64 = re.compile(r"data:[^,]{0,200};base64,[A-Za-z0-9+/=_\-\r\n]*", re.S)
_MIN_BINARY = 64  # shorter "base64" is cheap to scan and could be a bare card number


def binary_payload(value: Any) -> bool:
    """A long base64 value (or base64 data URL): media bytes, not text."""
    return (
        isinstance(value, str)
        and len(value) >= _MIN_BINARY
        and (_BASE64.fullmatch(value) is not None or _DATA_BASE64.fullmatch(value) is not None)
    )


# Application types that are text (besides every `text/*`, `+json` and `+xml`).
_TEXT_APPLICATION_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/x-python",
        "application/x-python-code",
        "application/rtf",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
        "application/csv",
        "application/x-sh",
        "application/x-httpd-php",
        "application/graphql",
        "application/markdown",
        "application/x-ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/typescript",
        "application/x-typescript",
        "application/x-ruby",
        "application/x-perl",
        "application/x-php",
        "application/x-tex",
        "application/x-latex",
        "application/x-sql",
        "application/x-toml",
        "application/x-subrip",
        "message/rfc822",
    }
)
# File names whose extension says text, whatever the host's mime.types knows: used for a
# bare base64 `file_data`, or a data URL with no telling type (`application/octet-stream`).
_TEXT_EXTENSIONS = frozenset(
    """
txt text md markdown rst adoc org csv tsv json jsonl ndjson json5 geojson yaml yml toml ini
cfg conf config env properties log xml html htm xhtml svg css scss less js mjs cjs ts tsx
jsx py pyi rb go rs java kt kts scala c h cc cpp cxx hpp hh cs fs swift m mm php pl pm lua
r jl sh bash zsh fish ps1 bat cmd sql graphql gql proto tex bib srt vtt eml mbox ics vcf
diff patch dockerfile makefile gradle tf hcl vue svelte dart ex exs erl hs elm clj lisp
""".split()
)
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown"})
_STRICT_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_STRICT_URLSAFE = re.compile(r"[A-Za-z0-9_\-]*={0,2}")
_UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_WHITE = re.compile(r"\s+")


def _is_text_type(media_type: str) -> bool:
    media = media_type.strip().lower()
    return (
        media.startswith("text/")
        or media in _TEXT_APPLICATION_TYPES
        or media.endswith(("+json", "+xml", "+yaml"))
    )


def _is_text_name(filename: Any) -> bool:
    if not isinstance(filename, str):
        return False
    name = filename.rsplit("/", 1)[-1].lower()
    extension = name.rsplit(".", 1)[-1] if "." in name else name  # `Makefile`, `.env`
    if extension in _TEXT_EXTENSIONS:
        return True
    guessed = mimetypes.guess_type(name)[0]
    return guessed is not None and _is_text_type(guessed)


class EncodedTextSlot:
    """A text document inside a base64 value, `holder[key]`: `text` is the decoded text,
    and `set` writes a new text back, encoded after the same data-URL header."""

    __slots__ = ("header", "holder", "key", "kind", "role", "text")

    def __init__(self, holder: Any, key: Any, header: str, text: str, role: str) -> None:
        self.holder, self.key, self.header = holder, key, header
        self.text, self.role, self.kind = text, role, TEXT

    def set(self, text: str) -> None:
        self.holder[self.key] = self.header + base64.b64encode(text.encode("utf-8")).decode("ascii")
        self.text = text


def text_document(value: Any, filename: Any = None) -> tuple[str, str] | None:
    """(header, text) when `value` is a text document in base64: a `data:` URL of a text
    type, or bare base64 under a `filename` whose extension names one. None for anything
    else (media, a URL, plain text). A text document the guards cannot read is a 400."""
    if not isinstance(value, str):
        return None
    if value[:5].lower() == "data:":  # (the scheme is case-insensitive)
        comma = value.find(",", 0, 400)  # a header is short: no search through the payload
        if comma < 0:
            return None
        header = value[:comma]
        params = header[5:].split(";")
        if params[-1].strip().lower() != "base64":
            return None  # not base64: the translators refuse it
        media = params[0].strip().lower() if len(params) > 1 else ""
        if not (_is_text_type(media) or (media in _UNTYPED and _is_text_name(filename))):
            return None
        charsets = {
            p.split("=", 1)[1].strip().strip('"').lower()
            for p in params[1:-1]
            if p.strip().lower().startswith("charset=")
        }
        if charsets - _UTF8_CHARSETS:
            raise _unreadable(f"its charset is {', '.join(sorted(charsets))}")
        return header + ",", _decoded(value[comma + 1 :])  # (a media payload is never copied)
    if _is_text_name(filename):
        return "", _decoded(value)
    return None


def _decoded(data: str) -> str:
    """The text of base64 `data`, read strictly: a decoder that stopped at padding in the
    middle would read less than a provider's might."""
    compact = _WHITE.sub("", data)
    try:
        padding = "" if "=" in compact else "=" * (-len(compact) % 4)  # unpadded is common
        if _STRICT_BASE64.fullmatch(compact):
            raw = base64.b64decode(compact + padding, validate=True)
        elif _STRICT_URLSAFE.fullmatch(compact):  # the URL-safe alphabet, which some encoders use
            raw = base64.urlsafe_b64decode(compact + padding)
        else:
            raise ValueError(compact[:20])
    except (binascii.Error, ValueError):
        raise _unreadable("it is not valid base64") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _unreadable("it is not UTF-8 text") from None


def _unreadable(why: str) -> GatewayError:
    return GatewayError(
        400,
        f"a text file in the request cannot be read by this route's guards: {why}; "
        "send text files base64-encoded as UTF-8",
        code="unguardable_request",
    )
