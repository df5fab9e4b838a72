"""A gateway config written to a temporary file and rendered, or its problems: what the
renderer tests share."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from extproc.render.loader import GatewayConfigError, render_file


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def render_config(tmp_path: Path, text: str) -> dict[str, Any]:
    return render_file(write_config(tmp_path, text))


def config_problems(tmp_path: Path, text: str) -> list[str]:
    """The problems `aigw render` reports for `text` (it must report some)."""
    with pytest.raises(GatewayConfigError) as exc:
        render_config(tmp_path, text)
    return exc.value.problems
