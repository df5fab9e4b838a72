"""How long `scripts/run` takes to serve: from launching it (no OPENAI_API_KEY, so the
mock provider) to the first chat completion answered through Envoy. Run by scripts/bench.

It uses envoy/mock.yaml's fixed ports (8080, Envoy's admin 9901, the mock's 18081), so it
is skipped, and says so, when something already listens on one of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PORTS = (8080, 9901, 18081)
URL = "http://127.0.0.1:8080/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def _in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def seconds_to_first_answer(timeout: float = 60.0) -> float | None:
    """None when a port it needs is taken; raises when it is not serving within `timeout`."""
    if any(_in_use(p) for p in PORTS):
        return None
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with httpx.Client(timeout=2, headers={"authorization": "Bearer bench"}) as client:
            while time.monotonic() - started < timeout:
                if proc.poll() is not None:
                    raise RuntimeError(f"scripts/run exited with {proc.returncode}")
                try:
                    if client.post(URL, json=BODY).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"scripts/run was not serving after {timeout:.0f} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


if __name__ == "__main__":
    print(seconds_to_first_answer())
