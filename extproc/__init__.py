"""An Envoy external processor that turns Envoy into an LLM gateway."""

import os

# gRPC's EventEngine listener, on by default in grpcio 1.85, costs this processor about
# 15% more CPU per request and 0.3 ms more per request at c=1 than gRPC's older listener
# (alternating runs, README "Benchmark"). gRPC reads GRPC_EXPERIMENTS once, when it is
# first used, so this is set before any module imports grpc. A value the operator set
# wins; `GRPC_EXPERIMENTS=` (empty) keeps gRPC's own defaults.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_listener")
# gRPC Python's fork support keeps a fork() without exec safe at a cost on every call;
# nothing in this processor forks without exec once gRPC runs (workers are new
# processes, scan workers fork from a forkserver that never imports grpc). Measured with
# scripts/bench_compare: c=1 p50 −7% and −13%, the guarded chain's CPU −7% twice.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
