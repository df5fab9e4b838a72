"""`aigw`: the command line.

aigw serve --bootstrap envoy/mock.yaml --socket /tmp/aigw/extproc.sock
aigw check --bootstrap envoy/mock.yaml     # validate only, exit 2 on a bad setting
aigw validate envoy/examples/failover.yaml # check a gateway config
aigw render envoy/examples/failover.yaml -o bootstrap.yaml
aigw up --bootstrap envoy/mock.yaml        # Envoy + processor + mocks, Ctrl-C stops
aigw mock --port 18081                     # the built-in mock provider
aigw mock-vllm --port 8000 --adapters a,b  # a mock vLLM model server (one simulated GPU)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from . import logs
from .settings import DEFAULT_MAX_REQUEST_BYTES, ProcessorSettings


def _serve(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_format)
    if args.worker_index is None and args.socket is None:
        # Several sockets in the bootstrap: supervise one worker per socket. Decided from
        # the YAML alone, so the supervisor never pays for building guards it won't run.
        from .runtime.bootstrap import ConfigError, processor_sockets, read_bootstrap

        try:
            doc = read_bootstrap(args.bootstrap)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        sockets = processor_sockets(doc) if isinstance(doc, dict) else []
        workers = args.workers if args.workers is not None else max(1, len(sockets))
        if workers > 1 or len(sockets) > 1:
            if len(sockets) != workers:
                print(
                    f"--workers {workers}: the bootstrap lists {len(sockets)} processor "
                    "socket(s) (pipe endpoints of the ext_proc cluster) and each worker serves "
                    f"one; render with gateway.processor.workers: {workers}",
                    file=sys.stderr,
                )
                return 2
            if args.tcp:
                print("--tcp serves one address: use it with a single worker", file=sys.stderr)
                return 2
            from .workers import supervise

            return supervise(_worker_argv(args), workers, args.grace)
    elif args.socket is not None and args.workers not in (None, 1):
        print("--socket names one socket: use it with a single worker", file=sys.stderr)
        return 2
    # Imported here so `aigw mock` does not pay for loading every provider and Envoy proto.
    from .runtime.bootstrap import ConfigError, load_bootstrap
    from .server import serve
    from .workers import STATE_ENV

    try:
        gw = load_bootstrap(args.bootstrap)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    # Workers of `serve --workers` share the cores for their guard scan processes too.
    scan_workers = (
        max(1, (os.cpu_count() or 1) // max(1, len(gw.processor_sockets)))
        if args.worker_index is not None
        else None
    )
    settings = ProcessorSettings(
        max_request_bytes=args.max_request_bytes, debug_bodies=args.debug_bodies, scan_workers=scan_workers
    )
    if args.debug_bodies:
        logging.getLogger("aigw").setLevel(logging.DEBUG)
        logging.getLogger("aigw").warning("--debug-bodies is on: request bodies will be logged")
    index = args.worker_index or 0
    sockets = [args.socket] if args.socket else gw.processor_sockets
    if index >= max(1, len(sockets)):
        print(f"--worker-index {index}: the bootstrap lists {len(sockets)} socket(s)", file=sys.stderr)
        return 2
    socket_path = sockets[index] if sockets else None
    if not socket_path and not args.tcp:
        print(
            "no socket: the bootstrap has no pipe endpoint for the ext_proc cluster; pass --socket or --tcp",
            file=sys.stderr,
        )
        return 2
    shared_state = os.environ.get(STATE_ENV) if args.worker_index is not None else None
    try:
        metrics_address = (args.metrics_host, args.metrics_port) if args.metrics_port else None
        asyncio.run(
            serve(
                gw,
                settings,
                socket_path=socket_path,
                tcp=args.tcp,
                grace=args.grace,
                metrics_address=metrics_address,
                shared_state=shared_state,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """The serve command line each worker runs (the supervisor adds --worker-index)."""
    argv = [
        "serve",
        "--bootstrap",
        args.bootstrap,
        "--log-format",
        args.log_format,
        "--log-level",
        args.log_level,
        "--max-request-bytes",
        str(args.max_request_bytes),
        "--metrics-port",
        str(args.metrics_port),
        "--metrics-host",
        args.metrics_host,
        "--grace",
        str(args.grace),
    ]
    return [*argv, "--debug-bodies"] if args.debug_bodies else argv


def _check(args: argparse.Namespace) -> int:
    from .runtime.bootstrap import ConfigError, load_bootstrap

    try:
        gw = load_bootstrap(args.bootstrap)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(f"ok: {len(gw.routes)} gateway route(s), {len(gw.backends)} backend(s)")
    for b in gw.backends:
        print(f"  backend {b.name}: provider={b.provider.name} model={b.settings.model or '(from request)'}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .render.loader import GatewayConfigError, render_file

    try:
        doc = render_file(args.config)
    except GatewayConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    routes = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]
    print(
        f"ok: {args.config}: {len(routes['virtual_hosts'][0]['routes'])} Envoy route(s), "
        f"{len(doc['static_resources']['clusters']) - 1} cluster(s)"
    )
    return 0


def _render(args: argparse.Namespace) -> int:
    from .render.loader import GatewayConfigError, dump, render_file

    try:
        text = dump(render_file(args.config), args.config)
    except GatewayConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        from pathlib import Path

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return 0


def _up(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from .local_stack import up
    from .render.loader import GatewayConfigError, dump, is_gateway_config, render_file

    path, run_dir = Path(args.bootstrap), Path(args.run_dir)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if is_gateway_config(doc):
        try:
            rendered = dump(render_file(path), str(path))
        except GatewayConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "bootstrap.yaml"
        path.write_text(rendered)
        print(f"rendered {args.bootstrap} to {path}", file=sys.stderr)
    return up(path, run_dir)


def _mock(args: argparse.Namespace) -> int:
    from .mock.server import run

    logs.setup(args.log_level, "text")
    run(args.host, args.port, args.provider or None)
    return 0


def _mock_vllm(args: argparse.Namespace) -> int:
    from .mock.vllm import run
    from .mock.vllm_config import config_from_args

    logs.setup(args.log_level, "text")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    run(args.host, args.port, config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aigw", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the ext_proc server")
    serve.add_argument("--bootstrap", required=True, help="the Envoy bootstrap Envoy also runs")
    serve.add_argument(
        "--socket",
        default=None,
        help="Unix socket path (default: the ext_proc cluster's pipe in the bootstrap)",
    )
    serve.add_argument("--tcp", default=None, help="also listen on host:port (optional)")
    serve.add_argument("--log-format", choices=("text", "json"), default="text")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--debug-bodies", action="store_true", help="log request bodies (they hold user data: debugging only)"
    )
    serve.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="default request body limit; routes may set maxRequestBytes",
    )
    serve.add_argument(
        "--metrics-port", type=int, default=9464, help="Prometheus /metrics port (0 turns it off)"
    )
    serve.add_argument("--metrics-host", default="127.0.0.1")
    serve.add_argument(
        "--grace", type=float, default=30.0, help="seconds to finish in-flight streams after SIGTERM"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processor processes, one per processor socket in the bootstrap "
        "(default: as many as the bootstrap lists)",
    )
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check", help="validate the gateway settings in a bootstrap")
    check.add_argument("--bootstrap", required=True)
    check.set_defaults(func=_check)

    validate = sub.add_parser("validate", help="check a gateway config (file:line: field: problem)")
    validate.add_argument("config")
    validate.set_defaults(func=_validate)

    render = sub.add_parser("render", help="render a gateway config to an Envoy bootstrap")
    render.add_argument("config")
    render.add_argument("-o", "--output", help="write here instead of stdout")
    render.set_defaults(func=_render)

    upc = sub.add_parser("up", help="run Envoy, the processor and mocks for a bootstrap or gateway config")
    upc.add_argument(
        "--bootstrap",
        default="envoy/mock.yaml",
        help="an Envoy bootstrap, or a gateway config (rendered first)",
    )
    upc.add_argument("--run-dir", default=".run", help="where logs go")
    upc.set_defaults(func=_up)

    mock = sub.add_parser("mock", help="run the mock LLM provider")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=18081)
    mock.add_argument(
        "--provider", action="append", help="speak only this provider's API (repeatable); default: all"
    )
    mock.add_argument("--log-level", default="warning")
    mock.set_defaults(func=_mock)

    from .mock.vllm_config import add_arguments

    vllm = sub.add_parser("mock-vllm", help="run a mock vLLM-style model server with /metrics")
    add_arguments(vllm)
    vllm.set_defaults(func=_mock_vllm)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
