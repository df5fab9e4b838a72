"""Shared helpers for provider translator tests: golden files (finding, reading, checking,
rewriting) and the stream plumbing the chunking properties use.

The layout of tests/golden/ and of its `cases.json` files is described in the docstring
of tests/unit/test_goldens.py, the harness that checks every case found here.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from extproc.mock import engine
from extproc.mock.dialects.base import Dialect
from extproc.providers import PROVIDERS, backend_settings_adapter
from extproc.providers.base import Provider
from extproc.sse import SSEParser
from extproc.stream_transcoder import StreamTranscoder

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
# Canonical requests every provider translates (request_shared_<name>.out.json each).
SHARED = GOLDEN / "requests"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

KINDS = ("request", "response", "stream", "error")
_LAYER_KEYS = {"model", "settings", "normalise", "note"}
_CASE_KEYS = _LAYER_KEYS | {"input", "mock", "status", "expected_status"}
_FILE_KEYS = _LAYER_KEYS | {"cases", *KINDS}
_ERROR_ROW_KEYS = {"name", "status", "body", "expected_status", "expected"}


def make_provider(settings: dict[str, Any]) -> Provider[Any]:
    """A provider instance from endpoint-metadata-shaped settings."""
    parsed = backend_settings_adapter.validate_python(settings)
    return PROVIDERS[parsed.provider](parsed)


def golden(provider: str, name: str) -> Any:
    """Load tests/golden/<provider>/<name>: JSON files parsed, others as bytes."""
    return read_golden(GOLDEN / provider / name)


def read_golden(path: Path) -> Any:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return path.read_bytes()


def json_text(doc: Any) -> str:
    """How rewritten goldens are written: stable, reviewable diffs."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def error_table_text(rows: list[dict[str, Any]]) -> str:
    """How errors.json is written: one entry a block, each field on its own line."""
    blocks = []
    for row in rows:
        fields = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in row.items()]
        blocks.append("  {" + ",\n   ".join(fields) + "}")
    return "[\n" + ",\n".join(blocks) + "\n]\n"


def check_golden(path: Path, actual: Any) -> None:
    """`actual` must equal the JSON in `path`. With UPDATE_GOLDEN=1 a differing file is
    rewritten instead (an equal one is left as written); review the diff afterwards."""
    expected = json.loads(path.read_text()) if path.exists() else None
    if actual == expected:
        return
    if UPDATE:
        path.write_text(json_text(actual))
        return
    where = path.relative_to(ROOT).as_posix()
    if not path.exists():
        pytest.fail(f"{where} is missing (UPDATE_GOLDEN=1 creates it):\n{json_text(actual)}", pytrace=False)
    fail_with_diff(where, expected, actual)


def check_error_row(row: ErrorRow, status: int, doc: Any) -> None:
    """Like check_golden, for one entry of an errors.json table."""
    expected = {"expected_status": row.row["expected_status"], "expected": row.row["expected"]}
    actual = {"expected_status": status, "expected": doc}
    if actual == expected:
        return
    if UPDATE:
        rows = json.loads(row.table.read_text())
        rows[row.index] = {**rows[row.index], **actual}
        row.table.write_text(error_table_text(rows))
        return
    fail_with_diff(f"{row.table.relative_to(ROOT).as_posix()}[{row.index}]", expected, actual)


def fail_with_diff(where: str, expected: Any, actual: Any) -> None:
    diff = "".join(
        difflib.unified_diff(
            json_text(expected).splitlines(keepends=True),
            json_text(actual).splitlines(keepends=True),
            fromfile=f"{where} (expected)",
            tofile="translated",
        )
    )
    pytest.fail(f"{where} differs (UPDATE_GOLDEN=1 rewrites it):\n{diff}", pytrace=False)


# ---- streams ---------------------------------------------------------------------------


def transcode(provider: Provider[Any], model: str, stream: bytes, cuts: list[int] | None = None) -> bytes:
    """Run a provider SSE byte stream through the upstream transcoder, delivered in the
    pieces that `cuts` (byte offsets) make, or in one piece."""
    tc = StreamTranscoder(provider.stream_translator(model))
    offsets = sorted({c for c in (cuts or []) if 0 < c < len(stream)})
    bounds = [0, *offsets, len(stream)]
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    out = []
    for i, piece in enumerate(pieces):
        out.append(tc.feed(piece, i == len(pieces) - 1))
    return b"".join(out)


def chunks_of(sse: bytes) -> list[Any]:
    """The data payloads of an OpenAI SSE stream: parsed JSON dicts, and the string
    "[DONE]" for the terminator."""
    parser = SSEParser()
    events = parser.feed(sse) + parser.close()
    out: list[Any] = []
    for ev in events:
        if not ev.has_data:
            continue
        out.append("[DONE]" if ev.data == "[DONE]" else orjson.loads(ev.data))
    return out


def translated_chunks(
    provider: Provider[Any], model: str, stream: bytes, cuts: list[int] | None = None
) -> list[Any]:
    """The normalised chunks a provider stream becomes: what stream goldens hold."""
    return normalise(chunks_of(transcode(provider, model, stream, cuts)))


def normalise(doc: Any) -> Any:
    """Replace run-time values (generated ids, timestamps) so goldens compare stably."""
    if isinstance(doc, list):
        return [normalise(d) for d in doc]
    if isinstance(doc, dict):
        out: dict[Any, Any] = {}
        for k, v in doc.items():
            if k == "created" and isinstance(v, int):
                out[k] = 0
            elif k == "id" and isinstance(v, str) and v.startswith("chatcmpl-"):
                out[k] = "chatcmpl-X"
            else:
                out[k] = normalise(v)
        return out
    return doc


def assert_valid_openai_stream(chunks: list[Any]) -> None:
    """Structural checks every translated stream must pass."""
    assert chunks and chunks[-1] == "[DONE]", "stream must end with [DONE]"
    assert chunks.count("[DONE]") == 1
    for c in chunks[:-1]:
        if "error" in c:
            assert set(c["error"]) >= {"message", "type"}
            continue
        assert c["object"] == "chat.completion.chunk"
        assert isinstance(c["id"], str) and isinstance(c["created"], int) and isinstance(c["model"], str)
        for choice in c["choices"]:
            assert set(choice) >= {"index", "delta", "finish_reason"}


def mock_round_trip(
    provider: Provider[Any],
    dialect: Dialect,
    path: str,
    req: dict[str, Any],
    query: dict[str, str],
    content: str | None = None,
) -> tuple[engine.MockRequest, engine.Plan]:
    """Canonical request -> provider body (as sent on the wire) -> the mock dialect's
    parsed request and plan."""
    body = orjson.loads(orjson.dumps(provider.translate_request(req, req["model"])))
    params = dialect.match("POST", path)
    assert params is not None, path
    mreq = dialect.parse(body, params, query)
    return mreq, engine.plan(mreq, content)


# ---- golden cases: discovery -------------------------------------------------------------


@dataclass(frozen=True)
class GoldenCase:
    """One input/expected pair in tests/golden/<provider>/, with the settings and model
    its cases.json gives it."""

    provider: str  # the directory name: a registry name
    name: str  # the expected file's name without `.out.json`
    kind: str  # request | response | stream | error
    input: Path
    expected: Path
    model: str
    settings: dict[str, Any] = field(hash=False)
    normalise: bool = True
    mock: bool = True
    status: int | None = None  # error cases: the provider's HTTP status...
    expected_status: int | None = None  # ...and the one the client gets

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.name}"

    def make(self) -> Provider[Any]:
        return make_provider(self.settings)


@dataclass(frozen=True)
class ErrorRow:
    """One entry of tests/golden/<provider>/errors.json."""

    provider: str
    table: Path
    index: int
    row: dict[str, Any] = field(hash=False)
    settings: dict[str, Any] = field(hash=False)

    @property
    def id(self) -> str:
        return f"{self.provider}/errors[{self.index}]-{self.row.get('name') or self.row['status']}"

    def make(self) -> Provider[Any]:
        return make_provider(self.settings)


@dataclass
class Goldens:
    cases: list[GoldenCase]
    error_rows: list[ErrorRow]
    problems: list[str]

    def of(self, kind: str) -> list[GoldenCase]:
        return [c for c in self.cases if c.kind == kind]


def _layer(doc: dict[str, Any], where: str, allowed: set[str], problems: list[str]) -> dict[str, Any]:
    unknown = set(doc) - allowed
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    return doc


def _most_specific(layers: list[dict[str, Any]], key: str, default: Any) -> Any:
    return next((layer[key] for layer in reversed(layers) if key in layer), default)


def _input_for(folder: Path, name: str, kind: str, case: dict[str, Any]) -> Path:
    if "input" in case:
        return folder / case["input"]
    if name.startswith("request_shared_"):
        return SHARED / f"{name.removeprefix('request_shared_')}.json"
    return folder / (f"{name}.sse" if kind == "stream" else f"{name}.in.json")


def _case(folder: Path, name: str, spec: dict[str, Any], problems: list[str]) -> GoldenCase | None:
    """The case named by `<name>.out.json`, or None (and a problem) if it cannot be run."""
    where = f"tests/golden/{folder.name}"
    kind = name.split("_", 1)[0]
    if kind not in KINDS:
        problems.append(f"{where}/{name}.out.json: the name must start with one of {KINDS}")
        return None
    case = _layer(spec.get("cases", {}).get(name, {}), f"{where}/cases.json {name}", _CASE_KEYS, problems)
    layers = [spec, _layer(spec.get(kind, {}), f"{where}/cases.json {kind}", _LAYER_KEYS, problems), case]
    source = _input_for(folder, name, kind, case)
    if not source.exists():
        problems.append(f"{where}/{name}.out.json: its input {source.relative_to(GOLDEN)} is missing")
    elif not any("model" in layer for layer in layers):
        problems.append(f"{where}/cases.json: no model for {name}")
    elif kind == "error" and not {"status", "expected_status"} <= set(case):
        problems.append(f"{where}/cases.json {name}: error cases need status and expected_status")
    else:
        return GoldenCase(
            provider=folder.name,
            name=name,
            kind=kind,
            input=source,
            expected=folder / f"{name}.out.json",
            model=_most_specific(layers, "model", ""),
            settings={k: v for layer in layers for k, v in layer.get("settings", {}).items()},
            normalise=_most_specific(layers, "normalise", True),
            mock=case.get("mock", True),
            status=case.get("status"),
            expected_status=case.get("expected_status"),
        )
    return None


def _error_rows(folder: Path, spec: dict[str, Any], problems: list[str]) -> list[ErrorRow]:
    table = folder / "errors.json"
    if not table.exists():
        return []
    settings = {**spec.get("settings", {}), **spec.get("error", {}).get("settings", {})}
    rows = []
    for i, row in enumerate(json.loads(table.read_text())):
        where = f"tests/golden/{folder.name}/errors.json[{i}]"
        _layer(row, where, _ERROR_ROW_KEYS, problems)
        if missing := (_ERROR_ROW_KEYS - {"name"}) - set(row):
            problems.append(f"{where}: missing {sorted(missing)}")
            continue
        rows.append(ErrorRow(folder.name, table, i, row, settings))
    return rows


def _provider_goldens(folder: Path, problems: list[str]) -> tuple[list[GoldenCase], list[ErrorRow]]:
    where = f"tests/golden/{folder.name}"
    if folder.name not in PROVIDERS:
        problems.append(f"{where}: not a registered provider ({sorted(PROVIDERS)})")
    if not (folder / "cases.json").exists():
        problems.append(f"{where}/cases.json is missing (base settings and model)")
        return [], []
    spec = _layer(
        json.loads((folder / "cases.json").read_text()), f"{where}/cases.json", _FILE_KEYS, problems
    )
    # Every provider translates every shared request: a missing expected file fails (and
    # UPDATE_GOLDEN=1 creates it).
    names = {p.name.removesuffix(".out.json") for p in folder.glob("*.out.json")}
    names |= {f"request_shared_{p.stem}" for p in SHARED.glob("*.json")}
    cases = [c for name in sorted(names) if (c := _case(folder, name, spec, problems))]
    for name in sorted(set(spec.get("cases", {})) - {c.name for c in cases}):
        problems.append(f"{where}/cases.json names {name!r}, which is not a runnable case")
    used = {folder / "cases.json", folder / "errors.json"} | {p for c in cases for p in (c.input, c.expected)}
    for path in sorted(set(folder.iterdir()) - used):
        problems.append(f"{where}/{path.name}: checked by no case (no matching .out.json or input)")
    return cases, _error_rows(folder, spec, problems)


@functools.cache
def goldens() -> Goldens:
    """Every golden case under tests/golden/, and what is wrong with the layout."""
    found = Goldens([], [], [])
    for folder in sorted(p for p in GOLDEN.iterdir() if p.is_dir() and p != SHARED):
        cases, rows = _provider_goldens(folder, found.problems)
        found.cases += cases
        found.error_rows += rows
    return found


def golden_case(provider: str, name: str) -> GoldenCase:
    """The case tests/golden/<provider>/<name>.out.json, with its cases.json settings and
    model (for focused tests that need more than the harness checks)."""
    [case] = [c for c in goldens().cases if (c.provider, c.name) == (provider, name)]
    return case
