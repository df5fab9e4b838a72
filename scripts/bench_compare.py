"""Two builds of the processor side by side, in one run: the one judge of a lever.

This machine's speed changes between runs by more than most levers are worth (README
"Benchmark"), so a lever is measured against its baseline in the same run: both
gateways (Envoy + processor, from the same rendered bench config) are up at once and
measured in alternating rounds, the order swapped every round, and the medians compared.

    scripts/bench_compare                     # this tree against HEAD
    scripts/bench_compare --ref main~3        # against another commit
    scripts/bench_compare --ref HEAD --env GRPC_EXPERIMENTS=    # a setting, same code
    scripts/bench_compare --ref HEAD --python /tmp/venv313/bin/python   # another interpreter

The baseline's processor runs from a git worktree of `--ref` (checked out in a temporary
directory and removed afterwards); the candidate is this tree, with `--env` settings. The
bench config is this tree's, so the baseline must be able to read its rendered bootstrap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Importing the package sets its gRPC settings in this process (extproc/__init__.py);
# each side's processor must decide for itself, from its own code, unless the operator
# set them.
_OPERATOR_ENV = dict(os.environ)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_stack  # noqa: E402

from extproc import GRPC_DEFAULTS  # noqa: E402
from extproc.devstack import MockProcess, free_port  # noqa: E402

WORDS = " ".join(f"word{i}" for i in range(40))
FIGURES = {
    "plain_cpu": "processor CPU ms/request, plain chat, c=10",
    "plain_p50": "p50 ms, plain chat, c=1",
    "plain_p99": "p99 ms, plain chat, c=10",
    "chain_cpu": "processor CPU ms/request, guarded Anthropic-first chain, c=10",
    "chain_p99": "p99 ms, guarded Anthropic-first chain, c=10",
    "chain_max": "slowest answer ms, guarded Anthropic-first chain, c=10",
    "first_chunk": "first content chunk p50 ms, plain stream",
}


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="aigw-compare-")) / "ref"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref], check=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False)


def start(
    tmp: Path, mock_port: int, name: str, code: Path, env: dict[str, str], python: str | None = None
) -> bench_stack.Gateway:
    """A gateway whose processor runs the package in `code` (`python -m extproc` finds it
    in its working directory first), with `env` on top of this process's environment,
    under `python` (a virtualenv's interpreter; default: this one)."""
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    os.chdir(code)
    for variable in GRPC_DEFAULTS:
        if variable in _OPERATOR_ENV:
            os.environ[variable] = _OPERATOR_ENV[variable]
        else:
            os.environ.pop(variable, None)
    os.environ.update(env)
    try:
        return bench_stack.Gateway(tmp, mock_port, name, python=python)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def measure(gw: bench_stack.Gateway, script: Path, duration: int) -> dict[str, float]:
    """One round on one side. Every answer must be a 200 and cost its own processor CPU:
    a side served by the other's processor, or failing, would pass for a lever."""
    plain = bench_stack.load(gw, bench_stack.PLAIN, 10, duration, script)
    if plain["non2xx"] or plain["cpu_ms_per_req"] < 0.05:
        raise SystemExit(f"{gw.url}: {plain['non2xx']} non-2xx answers, {plain['cpu_ms_per_req']:.3f} ms CPU")
    chain = bench_stack.load(gw, bench_stack.GUARDED, 10, duration, script)
    return {
        "plain_cpu": plain["cpu_ms_per_req"],
        "plain_p50": bench_stack.load(gw, bench_stack.PLAIN, 1, duration, script)["p50_ms"],
        "plain_p99": plain["p99_ms"],
        "chain_cpu": chain["cpu_ms_per_req"],
        "chain_p99": chain["p99_ms"],
        "chain_max": chain["max_ms"],
        "first_chunk": statistics.median(bench_stack.first_chunk_ms(gw.url + bench_stack.PLAIN, 40, WORDS)),
    }


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env takes NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="HEAD", help="the baseline's git ref (default HEAD)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the candidate only")
    ap.add_argument("--python", help="the candidate's interpreter (another virtualenv's python)")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds (default 6)")
    ap.add_argument("--duration", type=int, default=4, help="seconds per wrk run (default 4)")
    args = ap.parse_args(argv)
    env = parse_env(args.env)
    tmp = Path(tempfile.mkdtemp(prefix="aigw-compare-"))
    script = bench_stack.post_script(tmp, bench_stack.BODY)
    mock_port = free_port()
    mock = MockProcess(mock_port, ["openai", "anthropic"], tmp / "mock.log").start()
    results: dict[str, dict[str, list[float]]] = {"baseline": {}, "candidate": {}}
    try:
        with worktree(args.ref) as ref_tree:
            sides = {
                "baseline": start(tmp, mock_port, "baseline", ref_tree, {}),
                "candidate": start(tmp, mock_port, "candidate", ROOT, env, args.python),
            }
            try:
                for gw in sides.values():  # warm-up: connections, first-call costs
                    bench_stack.wrk(gw.url + bench_stack.PLAIN, 2, 2, script)
                    bench_stack.first_chunk_ms(gw.url + bench_stack.PLAIN, 10, WORDS)
                order = list(sides)
                for n in range(args.rounds):
                    for side in order if n % 2 == 0 else order[::-1]:
                        for key, value in measure(sides[side], script, args.duration).items():
                            results[side].setdefault(key, []).append(value)
                    print(f"  round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
            finally:
                for gw in sides.values():
                    gw.stop()
    finally:
        mock.stop()
    report(args, env, results)
    return 0


def report(args: argparse.Namespace, env: dict[str, str], results: dict[str, dict[str, list[float]]]) -> None:
    settings = " ".join(f"{k}={v}" for k, v in env.items()) or "no settings"
    if args.python:
        settings += f", under {args.python}"
    print(f"\nbaseline: {args.ref}; candidate: this tree, {settings}; {args.rounds} alternating rounds\n")
    print("| figure | baseline (median) | candidate (median) | change |")
    print("|---|---|---|---|")
    for key, label in FIGURES.items():
        base = statistics.median(results["baseline"][key])
        cand = statistics.median(results["candidate"][key])
        change = (cand - base) / base * 100 if base else 0.0
        print(f"| {label} | {base:.3f} | {cand:.3f} | {change:+.0f}% |")


if __name__ == "__main__":
    sys.exit(main())
