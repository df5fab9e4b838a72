"""An Envoy external processor that turns Envoy into an LLM gateway."""

import os

# gRPC settings for this processor, each measured with scripts/bench_compare (README
# "Benchmark"). gRPC reads them once, when it is first used, so they are set here, before
# any module imports grpc. A value the operator set wins (`GRPC_EXPERIMENTS=`, empty,
# keeps gRPC's own defaults).
GRPC_DEFAULTS = {
    # gRPC's EventEngine listener, on by default in grpcio 1.85, costs this processor
    # about a fifth more CPU per request and more latency than gRPC's older listener.
    "GRPC_EXPERIMENTS": "-event_engine_listener",
    # gRPC Python's fork support keeps a fork() without exec safe at a cost on every
    # call; nothing in this processor forks without exec once gRPC runs (workers are new
    # processes, scan workers fork from a forkserver that never imports grpc). c=1 p50
    # −7% and −13%, the guarded chain's CPU −7% twice.
    "GRPC_ENABLE_FORK_SUPPORT": "false",
}
for _name, _value in GRPC_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
