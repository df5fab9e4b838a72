"""`aigw serve --workers N`: one processor process per socket, Envoy spreading streams over
them, and the state that must be shared (Retry-After cooldowns, metrics) shared."""

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from extproc.render.loader import render_file
from tests.harness import ROOT, Stack, wait_for

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hello"}]


def lab(workers: int) -> Stack:
    doc = yaml.safe_load((ROOT / "envoy" / "examples" / "failover-lab.yaml").read_text())
    doc.setdefault("gateway", {})["processor"] = {"workers": workers}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.yaml"
        path.write_text(yaml.safe_dump(doc))
        rendered = render_file(path)
    return Stack(rendered, workers=True).start()


@pytest.fixture
def two():
    s = lab(2)
    yield s
    s.stop()


def worker_pids(stack: Stack) -> list[int]:
    out = os.popen(f"ps -o pid= --ppid {stack.processor.pid}").read().split()
    return [int(p) for p in out]


def test_two_workers_each_serve_streams_and_metrics_add_up(two):
    assert len(two.sockets) == 2 and all(p.exists() for p in two.sockets.values())
    assert len(worker_pids(two)) == 2
    for _ in range(20):
        r = two.post({"model": "m", "messages": USER})
        assert r.status_code == 200, r.text
    # Both workers took streams (round robin over the two endpoints of the processor
    # cluster), and /metrics, whichever worker answers it, counts all 20 requests.
    workers = {
        rec.get("pid") for rec in two.processor.log_records() if rec.get("msg") == "processor listening"
    }
    assert len(workers) == 2
    wait_for(
        lambda: two.metric("aigw_requests_total", route="chat") == 20,
        5,
        "one set of counters for both workers",
    )
    for _ in range(5):  # every scrape (any worker) sees the same total
        assert two.metric("aigw_requests_total", route="chat") == 20


def test_a_cooldown_seen_by_one_worker_cools_the_backend_for_all(two):
    two.mocks["primary"].behave(status=429, retryAfter=30)
    r = two.post({"model": "m", "messages": USER})
    assert r.status_code == 200 and r.json()["model"].startswith("claude")
    two.mocks["primary"].reset()
    # Envoy's health checks of the primary land on either worker (same port, SO_REUSEPORT):
    # all must answer 503 until the Retry-After ends, or the host would come back early.
    wait_for(lambda: _primary_unhealthy(two), 10, "the primary out of rotation")
    for _ in range(10):
        time.sleep(0.3)
        assert _primary_unhealthy(two), "a worker that did not see the 429 put the primary back"
    for _ in range(10):
        assert two.post({"model": "m", "messages": USER}).json()["model"].startswith("claude")
    assert two.mocks["primary"].requests == []


def _primary_unhealthy(stack: Stack) -> bool:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{stack.admin_port}/clusters", timeout=5).text
    return any(
        "/failed_active_hc" in line and "health_flags" in line
        for line in text.splitlines()
        if f":{stack.mocks['primary'].port}::" in line
    )


def test_a_dead_worker_is_restarted(two):
    victim = worker_pids(two)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(worker_pids(two)) == 2 and victim not in worker_pids(two), 15, "the worker restarted"
    )
    wait_for(two.processor.serving, 15, "every worker serving again")
    time.sleep(1.5)  # Envoy's next health check of the processor cluster
    for _ in range(20):
        assert two.post({"model": "m", "messages": USER}).status_code == 200


def test_workers_must_match_the_sockets_of_the_bootstrap(tmp_path):
    import subprocess
    import sys

    doc = render_file(ROOT / "envoy" / "examples" / "failover-lab.yaml")
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(doc))
    n = len(doc["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"])
    out = subprocess.run(
        [sys.executable, "-m", "extproc", "serve", "--bootstrap", str(path), "--workers", str(n + 1)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert f"lists {n} processor socket(s)" in out.stderr
