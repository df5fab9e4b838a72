"""Loading, validating and rendering a gateway config file, with errors that name the
file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..config.bootstrap import ConfigError, build_config
from . import yaml_lines
from .envoy import render
from .model import GatewayConfig


class GatewayConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def is_gateway_config(doc: Any) -> bool:
    """A compact gateway config rather than an Envoy bootstrap."""
    return isinstance(doc, dict) and "static_resources" not in doc and "routes" in doc


def _data_path(data: Any, loc: tuple) -> tuple:
    """Pydantic's error location without union tags (`single`, `openai`): only the parts
    that exist in the data."""
    out = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            out.append(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            out.append(part)
    return tuple(out)


def _field(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def load(path: str | Path) -> tuple[GatewayConfig, dict]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GatewayConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data, lines = yaml_lines.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise GatewayConfigError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise GatewayConfigError([f"{path}:1: the file must be a YAML mapping"])
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        for err in errors:
            # A list whose items failed is also reported as too short: say it once.
            if err["type"] == "too_short" and any(
                    len(o["loc"]) > len(err["loc"]) and tuple(o["loc"][:len(err["loc"])]) == tuple(err["loc"])
                    for o in errors):
                continue
            loc = _data_path(data, tuple(err["loc"]))
            line = yaml_lines.line_of(lines, loc)
            # The message names the full pydantic location when it goes deeper than the data.
            field = _field(loc) or "(top level)"
            msg = err["msg"]
            if err["type"] == "missing":
                msg = f"field '{err['loc'][-1]}' is required"
            elif err["type"] == "extra_forbidden":
                msg = f"unknown field '{err['loc'][-1]}'"
            problems.append(f"{path}:{line}: {field}: {msg}")
        raise GatewayConfigError(problems) from None
    return cfg, lines


def render_file(path: str | Path) -> dict:
    """Validate the config and render it; the rendered bootstrap is then checked by the
    processor's own validation, so what `render` writes is what `serve` accepts."""
    cfg, lines = load(path)
    try:
        doc = render(cfg)
    except ValueError as exc:
        raise GatewayConfigError([f"{path}: {exc}"]) from None
    try:
        build_config(doc, source=str(path), resolve_secrets=False)
    except ConfigError as exc:
        raise GatewayConfigError([f"{path}: {p}" for p in exc.problems]) from None
    return doc


HEADER = """# Rendered by `aigw render {source}`: edit that file, not this one.
# Envoy and the aigw processor both read this bootstrap.
"""


def dump(doc: dict, source: str) -> str:
    return HEADER.format(source=source) + yaml.safe_dump(doc, sort_keys=False, width=100,
                                                         allow_unicode=True)
