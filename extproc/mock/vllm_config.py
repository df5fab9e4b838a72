"""The vLLM mock's settings and their command-line flags (`aigw mock-vllm`).

Free of aiohttp so `aigw` builds its parser without loading the web server.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass
class VllmConfig:
    model: str = "base-model"
    # Adapter names served; None: any model name other than the base one is an adapter.
    adapters: list[str] | None = None
    max_running: int = 4
    per_token_ms: float = 5.0
    prefill_ms: float = 0.0
    # Answer length in tokens when the request sets no max_tokens.
    output_tokens: int = 20
    adapter_load_ms: float = 300.0
    max_loras: int = 2
    kv_capacity_tokens: int = 4000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = VllmConfig()
    flag = parser.add_argument
    flag("--host", default="127.0.0.1")
    flag("--port", type=int, default=8000)
    flag("--model", default=d.model, help="the base model's name (default: %(default)s)")
    flag("--adapters", help="LoRA adapters served, comma-separated (default: any name but --model)")
    flag("--max-running", type=int, default=d.max_running, help="batch size (default: %(default)s)")
    flag("--per-token-ms", type=float, default=d.per_token_ms, help="pace (default: %(default)s)")
    flag(
        "--prefill-ms", type=float, default=d.prefill_ms, help="before the first token (default: %(default)s)"
    )
    flag(
        "--output-tokens",
        type=int,
        default=d.output_tokens,
        help="answer length when the request sets no max_tokens (default: %(default)s)",
    )
    flag("--adapter-load-ms", type=float, default=d.adapter_load_ms, help="(default: %(default)s)")
    flag("--max-loras", type=int, default=d.max_loras, help="adapters loaded at once (default: %(default)s)")
    flag(
        "--kv-capacity-tokens",
        type=int,
        default=d.kv_capacity_tokens,
        help="tokens that fill the simulated KV cache (default: %(default)s)",
    )
    flag("--log-level", default="warning")


def config_from_args(args: argparse.Namespace) -> VllmConfig:
    # An empty --adapters serves the base model only.
    adapters = None if args.adapters is None else [a.strip() for a in args.adapters.split(",") if a.strip()]
    config = VllmConfig(
        model=args.model,
        adapters=adapters,
        max_running=args.max_running,
        per_token_ms=args.per_token_ms,
        prefill_ms=args.prefill_ms,
        output_tokens=args.output_tokens,
        adapter_load_ms=args.adapter_load_ms,
        max_loras=args.max_loras,
        kv_capacity_tokens=args.kv_capacity_tokens,
    )
    for name in ("max_running", "max_loras", "output_tokens", "kv_capacity_tokens"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("per_token_ms", "prefill_ms", "adapter_load_ms"):
        if getattr(config, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must not be negative")
    return config
