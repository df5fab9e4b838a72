"""The load model behind the vLLM mock: one simulated GPU.

At most `max_running` requests run at once; the rest wait, admitted first come first
served among those that can start (like vLLM, a request whose LoRA adapter has no free
slot does not block the requests behind it). A request for an adapter that is not loaded
holds its running slot while the adapter loads (`adapter_load_ms`); at most `max_loras`
adapters are loaded, and loading a new one evicts the least recently used idle one.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from .vllm_config import VllmConfig


@dataclass(eq=False)
class _Job:
    adapter: str | None
    # Prompt + output tokens: the KV cache this request holds while it runs.
    tokens: int
    admitted: asyncio.Future[None]


@dataclass(eq=False)
class _Adapter:
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Running requests using it; only an adapter with none may be evicted.
    users: int = 0


class Scheduler:
    def __init__(self, config: VllmConfig) -> None:
        self.config = config
        self.waiting: list[_Job] = []
        self.running: list[_Job] = []
        # Loaded (or loading) adapters, least recently used first.
        self.adapters: OrderedDict[str, _Adapter] = OrderedDict()
        self._loads: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def slot(self, adapter: str | None, tokens: int) -> AsyncIterator[None]:
        """Wait for a running slot (and the adapter to be loaded), hold it for the body."""
        job = _Job(adapter, tokens, asyncio.get_running_loop().create_future())
        self.waiting.append(job)
        try:
            self.schedule()
            await job.admitted
            if adapter is not None:
                await self.adapters[adapter].ready.wait()
            yield
        finally:
            self._release(job)
            self.schedule()

    def schedule(self) -> None:
        """Admit waiting requests while there is room. Call after anything that frees room."""
        for job in list(self.waiting):
            if len(self.running) >= self.config.max_running:
                return
            if job.adapter is not None and not self._reserve(job.adapter):
                continue
            self.waiting.remove(job)
            self.running.append(job)
            job.admitted.set_result(None)

    # ---- live figures, as /metrics reports them ----

    def kv_usage(self) -> float:
        used = sum(job.tokens for job in self.running)
        return min(1.0, used / max(1, self.config.kv_capacity_tokens))

    def loaded_adapters(self) -> list[str]:
        return [name for name, a in self.adapters.items() if a.ready.is_set()]

    def waiting_adapters(self) -> list[str]:
        """Adapters not loaded yet that requests wait for (queued, or holding a slot during the load)."""
        loaded = set(self.loaded_adapters())
        jobs = [*self.waiting, *self.running]
        return list(
            dict.fromkeys(j.adapter for j in jobs if j.adapter is not None and j.adapter not in loaded)
        )

    # ---- internals ----

    def _reserve(self, name: str) -> bool:
        """Pin adapter `name` for one running request, starting its load if needed."""
        adapter = self.adapters.get(name)
        if adapter is None:
            if len(self.adapters) >= self.config.max_loras and not self._evict_idle():
                return False
            adapter = self.adapters[name] = _Adapter()
            task = asyncio.create_task(self._load(adapter))
            self._loads.add(task)
            task.add_done_callback(self._loads.discard)
        self.adapters.move_to_end(name)
        adapter.users += 1
        return True

    def _evict_idle(self) -> bool:
        for name, adapter in self.adapters.items():
            if adapter.users == 0 and adapter.ready.is_set():
                del self.adapters[name]
                return True
        return False

    async def _load(self, adapter: _Adapter) -> None:
        await asyncio.sleep(self.config.adapter_load_ms / 1000)
        adapter.ready.set()
        # A load whose requests all went away leaves an idle adapter others may now evict.
        self.schedule()

    def _release(self, job: _Job) -> None:
        if job in self.waiting:
            self.waiting.remove(job)
        elif job in self.running:
            self.running.remove(job)
            if job.adapter is not None:
                self.adapters[job.adapter].users -= 1
        if not job.admitted.done():
            job.admitted.cancel()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(scheduler: Scheduler, prompt_tokens: int, generation_tokens: int) -> str:
    """Prometheus text exposition with vLLM's metric names, from the live state."""
    model = f'{{model_name="{_label(scheduler.config.model)}"}}'
    kv = scheduler.kv_usage()
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, *samples: str) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples])

    family(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        f"vllm:num_requests_running{model} {float(len(scheduler.running))}",
    )
    family(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        f"vllm:num_requests_waiting{model} {float(len(scheduler.waiting))}",
    )
    # Older vLLM names it gpu_cache_usage_perc, newer kv_cache_usage_perc: a scraper may read either.
    for name in ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"):
        family(name, "gauge", "KV-cache usage. 1 means 100 percent usage.", f"{name}{model} {kv}")
    # running_lora_adapters lists the loaded adapters, as the Gateway API Inference Extension
    # reads it ("loaded and ready to serve"); waiting_lora_adapters those requests wait to load.
    lora = ",".join(
        [
            f'max_lora="{scheduler.config.max_loras}"',
            f'running_lora_adapters="{_label(",".join(scheduler.loaded_adapters()))}"',
            f'waiting_lora_adapters="{_label(",".join(scheduler.waiting_adapters()))}"',
        ]
    )
    # vLLM reports the time of the update as the value, so a scraper can pick the latest series.
    family(
        "vllm:lora_requests_info",
        "gauge",
        "Running stats on lora requests.",
        f"vllm:lora_requests_info{{{lora}}} {time.time()}",
    )
    family(
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        f"vllm:prompt_tokens_total{model} {float(prompt_tokens)}",
    )
    family(
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        f"vllm:generation_tokens_total{model} {float(generation_tokens)}",
    )
    return "\n".join(lines) + "\n"
