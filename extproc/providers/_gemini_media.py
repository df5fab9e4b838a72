"""Media parts (images, audio, video, documents) -> Gemini `inlineData` / `fileData`.

Google refuses a part whose MIME type it cannot read, with an error that names neither
the message nor the part; the gateway refuses it first, naming both. The accepted types
are the union of what the Gemini API and Vertex AI document, so nothing either takes is
refused here.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import urlsplit

from .base import UnsupportedRequest, check_media_type, normalise_media_type, parse_data_url

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
AUDIO_TYPES = frozenset(
    {
        "audio/wav",
        "audio/mp3",
        "audio/mpeg",
        "audio/mpga",
        "audio/aiff",
        "audio/aac",
        "audio/x-aac",
        "audio/ogg",
        "audio/flac",
        "audio/m4a",
        "audio/mp4",
        "audio/pcm",
        "audio/webm",
    }
)
VIDEO_TYPES = frozenset(
    {
        "video/mp4",
        "video/mpeg",
        "video/mpg",
        "video/mpegs",
        "video/mov",
        "video/quicktime",
        "video/avi",
        "video/x-flv",
        "video/webm",
        "video/wmv",
        "video/3gpp",
    }
)
DOCUMENT_TYPES = frozenset(
    {
        "application/pdf",
        "text/plain",
        "text/html",
        "text/css",
        "text/csv",
        "text/xml",
        "text/rtf",
        "text/md",
        "text/markdown",
        "text/javascript",
        "application/x-javascript",
        "text/x-python",
        "application/x-python",
    }
)
ACCEPTED_TYPES = IMAGE_TYPES | AUDIO_TYPES | VIDEO_TYPES | DOCUMENT_TYPES
# Other names for accepted types (clients' and Python's `mimetypes`), sent by Google's name.
_ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/x-aiff": "audio/aiff",
    "audio/3gpp": "video/3gpp",
    "application/xml": "text/xml",
    "application/rtf": "text/rtf",
    "video/x-msvideo": "video/avi",
    "video/x-ms-wmv": "video/wmv",
    "application/javascript": "text/javascript",
}

# `input_audio.format` -> MIME type (the two formats OpenAI's schema has).
INPUT_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
# A file URI whose path has no recognisable extension is sent as an image (the usual case).
DEFAULT_URI_TYPE = "image/jpeg"


def media_part(url: Any, where: str) -> dict[str, Any]:
    """An `image_url` URL or `file.file_data` data URL -> an inlineData or fileData part."""
    if not isinstance(url, str):
        raise UnsupportedRequest(f"'{where}': a url is required", param=where)
    if url.startswith("data:"):
        parsed = parse_data_url(url)
        if parsed is None:
            raise UnsupportedRequest(f"'{where}': only base64 data URLs are supported", param=where)
        return {"inlineData": {"mimeType": _accepted(parsed[0], where), "data": parsed[1]}}
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "gs"):
        raise UnsupportedRequest(f"'{where}': unsupported URL scheme {scheme!r}", param=where)
    # Google requires a MIME type next to a file URI; guess it from the extension.
    guessed = mimetypes.guess_type(urlsplit(url).path)[0]
    mime = _accepted(guessed, where) if guessed else DEFAULT_URI_TYPE
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _accepted(media_type: str, where: str) -> str:
    """The type by Google's name (`image/jpg` -> `image/jpeg`), or a 400 naming the part."""
    media = normalise_media_type(media_type)
    return check_media_type(_ALIASES.get(media, media), ACCEPTED_TYPES, "Gemini", where)
