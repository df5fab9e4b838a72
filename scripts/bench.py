"""The benchmark behind scripts/bench. See that file for usage.

Both setups use envoy/mock.yaml's layout and the same mock provider process; "bare"
removes the ext_proc filters (route-level and upstream), so the difference is the cost
of the gateway. wrk drives the load from its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from extproc.devstack import Envoy, MockProcess, Processor, free_port  # noqa: E402

BODY = {"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write one sentence about Envoy proxies."}]}


def bootstrap(gateway: bool, port: int, admin: int, mock_port: int, sock: Path) -> dict:
    doc = yaml.safe_load((ROOT / "envoy" / "mock.yaml").read_text())
    doc["admin"]["address"]["socket_address"]["port_value"] = admin
    listener = doc["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = port
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.pop("access_log", None)  # the same for both: no access log I/O in the figures
    for cluster in doc["static_resources"]["clusters"]:
        for loc in cluster["load_assignment"]["endpoints"]:
            for lb in loc["lb_endpoints"]:
                addr = lb["endpoint"]["address"]
                if "pipe" in addr:
                    addr["pipe"]["path"] = str(sock)
                else:
                    addr["socket_address"]["port_value"] = mock_port
        if not gateway:
            options = cluster.get("typed_extension_protocol_options", {})
            for opt in options.values():
                opt.pop("http_filters", None)
    if not gateway:
        hcm["http_filters"] = [f for f in hcm["http_filters"] if "ext_proc" not in f["name"]]
        for route in hcm["route_config"]["virtual_hosts"][0]["routes"]:
            route.pop("typed_per_filter_config", None)
    return doc


def wrk(url: str, concurrency: int, duration: int, script: Path) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"),
            "non2xx": int(errors.group(1)) if errors else 0}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--concurrency", default="1,10")
    ap.add_argument("--json", help="also write results to this file")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="aigw-bench-"))
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["content-type"] = "application/json"\n'
        'wrk.headers["authorization"] = "Bearer bench"\n')
    mock_port = free_port()
    mock = MockProcess(mock_port, ["openai"], tmp / "mock.log").start()
    results: dict[str, dict[int, dict]] = {}
    try:
        for name, gateway in (("bare envoy", False), ("gateway", True)):
            port, admin, sock = free_port(), free_port(), tmp / f"{name[:4]}.sock"
            path = tmp / f"{name.replace(' ', '-')}.yaml"
            path.write_text(yaml.safe_dump(bootstrap(gateway, port, admin, mock_port, sock)))
            processor = Processor(path, sock, tmp / "processor.log", ["--log-level", "warning"],
                                  log_format="text").start() if gateway else None
            envoy = Envoy(path, tmp / f"{name}.log", admin).start()
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            try:
                wrk(url, 2, 2, script)  # warm-up: connections, caches, first-call costs
                results[name] = {}
                for c in levels:
                    cpu0 = cpu_seconds(processor.pid) if processor else 0.0
                    r = wrk(url, c, args.duration, script)
                    if processor:
                        total = r["rps"] * args.duration
                        r["proc_cpu_ms_per_req"] = (cpu_seconds(processor.pid) - cpu0) * 1000 / total
                    results[name][c] = r
                    print(f"  {name:<10} c={c:<3} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
                          f"  p99 {r['p99_ms']:6.2f} ms  non-2xx {r['non2xx']}", file=sys.stderr)
            finally:
                envoy.stop()
                if processor:
                    processor.stop()
    finally:
        mock.stop()

    print(f"\nbench: {args.duration}s per run, wrk -t1, Envoy --concurrency 1, "
          f"{os.cpu_count()} CPUs shared by wrk, Envoy, processor and mock\n")
    print("| setup | concurrency | req/s | p50 ms | p99 ms | processor CPU ms/req |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        for c, r in rows.items():
            cpu = f"{r['proc_cpu_ms_per_req']:.2f}" if "proc_cpu_ms_per_req" in r else "-"
            print(f"| {name} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {cpu} |")
    print("\n| concurrency | gateway/bare req/s | gateway/bare p50 | gateway/bare p99 |")
    print("|---|---|---|---|")
    for c in levels:
        b, g = results["bare envoy"][c], results["gateway"][c]
        print(f"| {c} | {g['rps'] / b['rps']:.2f} | {g['p50_ms'] / b['p50_ms']:.2f}x | {g['p99_ms'] / b['p99_ms']:.2f}x |")
    import bench_holdback
    bench_holdback.main()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    bad = sum(r["non2xx"] for rows in results.values() for r in rows.values())
    if bad:
        print(f"\nwarning: {bad} non-2xx responses during the run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
