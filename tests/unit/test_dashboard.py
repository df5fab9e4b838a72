"""The Grafana dashboard and its Prometheus plumbing, checked without Docker.

Every PromQL query in deploy/grafana/dashboards/aigw.json is parsed (a small parser for
the PromQL the dashboard uses, below) and each series it selects must be one the processor
really exports, with the labels it really has: the set comes from prometheus_client's
registry after importing extproc.metrics, not from a list kept here. The same goes for
`by (...)` clauses, `{label=...}` matchers, legends' `{{label}}` and the template variables.
The provisioning files, compose.yaml and the Prometheus config are checked against each
other: the same datasource uid, the dashboard folder compose mounts, the processor's port.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import extproc.metrics
from extproc.cli import build_parser
from extproc.devstack import free_port
from tests.harness import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "aigw.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "aigw.yaml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"


# --- what the processor exports ------------------------------------------------------------

_PROBE = "__dashboard_test_probe__"


def exported_series() -> dict[str, frozenset[str]]:
    """Series name -> label names, as prometheus_client would expose them.

    A labelled metric exposes no sample until a child exists, so each one gets a probe
    child for the moment of collecting it (removed right after). Counters come out as
    `_total` (and `_created`), histograms as `_bucket` (with `le`), `_count`, `_sum`.
    """
    series: dict[str, set[str]] = {}
    # The registry has no public list of its collectors; _collector_to_names is what
    # register() fills (and what prometheus_client itself iterates to collect).
    for collector in list(REGISTRY._collector_to_names):
        wrapper = collector if isinstance(collector, MetricWrapperBase) else None
        labelnames = getattr(wrapper, "_labelnames", ()) if wrapper is not None else ()
        if wrapper is not None and labelnames:
            wrapper.labels(*[_PROBE] * len(labelnames))
        try:
            for family in collector.collect():
                for sample in family.samples:
                    series.setdefault(sample.name, set()).update(sample.labels)
        finally:
            if wrapper is not None and labelnames:
                wrapper.remove(*[_PROBE] * len(labelnames))
    return {name: frozenset(labels) for name, labels in series.items()}


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    return exported_series()


# --- a PromQL parser for what dashboards use -------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){},])
""",
    re.VERBOSE,
)

AGGREGATIONS = {
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
}
_AGG_WITH_PARAM = {"topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"}
# Functions whose result keeps the argument's labels.
_SAME_LABELS = {
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "resets",
    "changes",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
    "abs",
    "ceil",
    "floor",
    "round",
    "sqrt",
    "exp",
    "ln",
    "log2",
    "log10",
    "sgn",
    "clamp",
    "clamp_min",
    "clamp_max",
}
_SCALAR_FUNCS = {"scalar", "time", "pi"}
_SET_OPS = {"and", "or", "unless"}
_BINARY = {"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "atan2", *_SET_OPS}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}


class PromQLError(ValueError):
    pass


@dataclass
class Selector:
    metric: str
    matchers: list[str]  # label names matched on


@dataclass
class Literal:
    kind: str  # "scalar" or "string"


@dataclass
class Call:
    name: str
    args: list


@dataclass
class Aggregation:
    op: str
    args: list
    by: list[str] | None = None
    without: list[str] | None = None


@dataclass
class Binary:
    op: str
    lhs: object
    rhs: object
    on: list[str] | None = None
    ignoring: list[str] | None = None
    group: list[str] | None = None  # group_left/group_right labels


@dataclass
class Subquery:
    expr: object


class _Parser:
    def __init__(self, text: str):
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise PromQLError(f"cannot read {text[pos : pos + 20]!r}")
            kind = m.lastgroup
            assert kind is not None  # every alternative of _TOKEN is a named group
            if kind != "ws":
                self.tokens.append((kind, m.group()))
            pos = m.end()
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tok_kind, tok = self.peek()
        if (value is not None and tok != value) or (kind is not None and tok_kind != kind):
            raise PromQLError(f"expected {value or kind}, found {tok!r}")
        self.i += 1
        return tok

    def labels(self) -> list[str]:
        self.take("(")
        out = []
        while self.peek()[1] != ")":
            out.append(self.take(kind="ident"))
            if self.peek()[1] == ",":
                self.take(",")
        self.take(")")
        return out

    def parse(self):
        expr = self.expr()
        if self.peek()[0] != "eof":
            raise PromQLError(f"unexpected {self.peek()[1]!r}")
        return expr

    def expr(self):
        lhs = self.unary()
        while self.peek()[1] in _BINARY:
            node = Binary(self.take(), lhs, None)
            if self.peek()[1] == "bool":
                self.take()
            if self.peek()[1] in ("on", "ignoring"):
                setattr(node, self.take(), self.labels())
            if self.peek()[1] in ("group_left", "group_right"):
                self.take()
                node.group = self.labels() if self.peek()[1] == "(" else []
            node.rhs = self.unary()
            lhs = node
        return lhs

    def unary(self):
        if self.peek()[1] in ("-", "+"):
            self.take()
            return self.unary()
        node = self.primary()
        while True:
            kind, tok = self.peek()
            if kind == "range":
                self.take()
                node = Subquery(node) if ":" in tok else node
            elif tok == "offset":
                self.take()
                if self.peek()[1] == "-":
                    self.take()
                self.take(kind="duration")
            else:
                return node

    def primary(self):
        kind, tok = self.peek()
        if kind == "number" or tok in ("Inf", "NaN"):
            self.take()
            return Literal("scalar")
        if kind == "string":
            self.take()
            return Literal("string")
        if tok == "(":
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        if kind != "ident":
            raise PromQLError(f"unexpected {tok!r}")
        self.take()
        if tok in AGGREGATIONS and self.peek()[1] in ("(", "by", "without"):
            node = Aggregation(tok, [])
            if self.peek()[1] in ("by", "without"):
                setattr(node, self.take(), self.labels())
            node.args = self.args()
            if self.peek()[1] in ("by", "without"):
                setattr(node, self.take(), self.labels())
            return node
        if self.peek()[1] == "(":
            return Call(tok, self.args())
        matchers = []
        if self.peek()[1] == "{":
            self.take("{")
            while self.peek()[1] != "}":
                matchers.append(self.take(kind="ident"))
                if self.take() not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"bad matcher on {matchers[-1]}")
                self.take(kind="string")
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("}")
        return Selector(tok, matchers)

    def args(self) -> list:
        self.take("(")
        out = []
        while self.peek()[1] != ")":
            out.append(self.expr())
            if self.peek()[1] == ",":
                self.take(",")
        self.take(")")
        return out


def parse(text: str):
    return _Parser(text).parse()


def selectors(node) -> list[Selector]:
    """Every series selector in the expression, in order."""
    if isinstance(node, Selector):
        return [node]
    children = []
    if isinstance(node, (Call, Aggregation)):
        children = node.args
    elif isinstance(node, Binary):
        children = [node.lhs, node.rhs]
    elif isinstance(node, Subquery):
        children = [node.expr]
    return [s for child in children for s in selectors(child)]


def walk(node):
    yield node
    for child in getattr(node, "args", []) or []:
        yield from walk(child)
    for attr in ("lhs", "rhs", "expr"):
        if getattr(node, attr, None) is not None:
            yield from walk(getattr(node, attr))


SCALAR = "scalar"
UNKNOWN = "unknown"  # after an error: no further label checks on this branch


@dataclass
class Check:
    """Result labels of an expression against the exported series, and every problem found."""

    exported: dict[str, frozenset[str]]
    errors: list[str] = field(default_factory=list)

    def need(self, labels, have, what: str) -> None:
        if have in (SCALAR, UNKNOWN):
            if have == SCALAR:
                self.errors.append(f"{what}: {labels} on a scalar")
            return
        missing = sorted(set(labels) - have)
        if missing:
            self.errors.append(f"{what}: no label {', '.join(missing)} (has {', '.join(sorted(have))})")

    def labels(self, node):
        if isinstance(node, Literal):
            return SCALAR
        if isinstance(node, Subquery):
            return self.labels(node.expr)
        if isinstance(node, Selector):
            if node.metric not in self.exported:
                self.errors.append(f"{node.metric} is not a series the processor exports")
                return UNKNOWN
            have = self.exported[node.metric]
            self.need(node.matchers, have, f"{node.metric}{{...}} matcher")
            return have
        if isinstance(node, Call):
            args = [self.labels(a) for a in node.args]
            if node.name in _SAME_LABELS:
                vectors = [a for a in args if a != SCALAR]
                return vectors[0] if vectors else SCALAR
            if node.name == "histogram_quantile":
                if len(args) != 2 or args[0] != SCALAR:
                    self.errors.append("histogram_quantile takes (φ, buckets)")
                    return UNKNOWN
                self.need(["le"], args[1], "histogram_quantile")
                return args[1] - {"le"} if args[1] not in (SCALAR, UNKNOWN) else args[1]
            if node.name == "vector":
                return frozenset()
            if node.name in _SCALAR_FUNCS:
                return SCALAR
            self.errors.append(f"function {node.name} is not known to this test's parser")
            return UNKNOWN
        if isinstance(node, Aggregation):
            args = [self.labels(a) for a in node.args]
            inner: Any = args[-1] if args else UNKNOWN  # a label set, SCALAR or UNKNOWN
            if node.by is not None:
                self.need(node.by, inner, f"{node.op} by")
            if node.without is not None:
                self.need(node.without, inner, f"{node.op} without")
            if inner in (SCALAR, UNKNOWN):
                return UNKNOWN
            if node.op in ("topk", "bottomk", "limitk", "limit_ratio"):
                return inner
            if node.by is not None:
                return frozenset(node.by)
            if node.without is not None:
                return inner - set(node.without)
            return frozenset()
        if isinstance(node, Binary):
            lhs, rhs = self.labels(node.lhs), self.labels(node.rhs)
            if lhs == SCALAR or rhs == SCALAR:
                return rhs if lhs == SCALAR else lhs
            if UNKNOWN in (lhs, rhs):
                return UNKNOWN
            if node.on is not None:
                self.need(node.on, lhs, f"left of {node.op} on")
                self.need(node.on, rhs, f"right of {node.op} on")
            if node.ignoring is not None:
                self.need(node.ignoring, lhs | rhs, f"{node.op} ignoring")
            if node.group is not None:
                self.need(node.group, rhs, f"{node.op} group_*")
            if node.op in _SET_OPS:
                return lhs | rhs if node.op == "or" else lhs
            if node.on is None and node.ignoring is None and node.group is None and lhs != rhs:
                self.errors.append(
                    f"{node.op} matches {sorted(lhs)} with {sorted(rhs)}: no pair would ever match"
                )
            return lhs | set(node.group or ())
        raise PromQLError(f"cannot check {node!r}")


def check(expr: str, exported) -> tuple[AbstractSet[str] | str, list[str]]:
    """(result labels, problems) of one query, with Grafana's $variables filled in."""
    text = re.sub(r"\$__\w+|\$\{\w+\}|\$\w+", "5m", expr)
    checker = Check(exported)
    result = checker.labels(parse(text))
    return result, checker.errors


# --- the dashboard ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def _queries(dashboard):
    """(panel title, target) for every query of every panel."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target


def _all_queries():
    return [
        pytest.param(t["expr"], t.get("legendFormat", ""), id=f"{title} {t['refId']}")
        for title, t in _queries(json.loads(DASHBOARD.read_text()))
    ]


@pytest.fixture(scope="module")
def datasource() -> dict:
    [source] = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return source


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host path (relative to the repo) of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith((".", "/")):
            out[container] = host
    return out


# --- the registry and the parser themselves ---------------------------------------------------


def test_registry_holds_every_metric_the_processor_defines(exported):
    defined = [m for m in vars(extproc.metrics).values() if isinstance(m, MetricWrapperBase)]
    assert len(defined) >= 8
    for metric in defined:
        if metric._type == "counter":
            names = {f"{metric._name}_total"}
        elif metric._type == "gauge":
            names = {metric._name}
        else:
            names = {f"{metric._name}_bucket", f"{metric._name}_count", f"{metric._name}_sum"}
        for name in names:
            assert name in exported, f"{name} is not exported"
            assert set(metric._labelnames) <= exported[name]
    assert "le" in exported["gen_ai_server_time_to_first_token_seconds_bucket"]
    assert "le" not in exported["gen_ai_server_time_to_first_token_seconds_count"]
    # The probe children are gone again: nothing else sees them.
    for family in REGISTRY.collect():
        assert all(_PROBE not in s.labels.values() for s in family.samples)


@pytest.mark.parametrize(
    "expr, metrics, result",
    [
        (
            "rate(aigw_requests_total[5m])",
            ["aigw_requests_total"],
            {"route", "gen_ai_provider_name", "backend", "status"},
        ),
        (
            'sum by (backend, status) (rate(aigw_attempts_total{retry="true"}[5m]))',
            ["aigw_attempts_total"],
            {"backend", "status"},
        ),
        (
            "histogram_quantile(0.95, "
            "sum by (le) (rate(gen_ai_server_time_to_first_token_seconds_bucket[5m])))",
            ["gen_ai_server_time_to_first_token_seconds_bucket"],
            set(),
        ),
        (
            'sum(rate(aigw_tokens_total{gen_ai_token_type!="total"}[5m])) without (route)',
            ["aigw_tokens_total"],
            {
                "gen_ai_provider_name",
                "backend",
                "gen_ai_request_model",
                "gen_ai_response_model",
                "gen_ai_token_type",
            },
        ),
        (
            "sum(rate(aigw_requests_total{status=~'5..'}[5m])) / "
            "sum(rate(aigw_requests_total[5m])) or vector(0)",
            ["aigw_requests_total", "aigw_requests_total"],
            set(),
        ),
        (
            "sum by (backend) (rate(aigw_attempts_total[1h] offset 5m)) / on (backend) "
            "sum by (backend) (increase(aigw_requests_total[1h]))",
            ["aigw_attempts_total", "aigw_requests_total"],
            {"backend"},
        ),
        (
            "max_over_time(rate(aigw_guard_actions_total[1m])[10m:1m])",
            ["aigw_guard_actions_total"],
            {"route", "direction", "guard", "action", "entity"},
        ),
    ],
)
def test_the_parser_reads_promql(exported, expr, metrics, result):
    labels, errors = check(expr, exported)
    assert errors == []
    assert [s.metric for s in selectors(parse(expr))] == metrics
    assert labels == result


@pytest.mark.parametrize(
    "expr, problem",
    [
        ("rate(aigw_request_total[5m])", "aigw_request_total is not a series"),
        ("rate(aigw_requests[5m])", "aigw_requests is not a series"),
        ("rate(gen_ai_server_time_to_first_token_seconds[5m])", "is not a series"),
        ("sum by (model) (rate(aigw_tokens_total[5m]))", "no label model"),
        ('rate(aigw_attempts_total{route="chat"}[5m])', "no label route"),
        (
            "histogram_quantile(0.9, "
            "sum by (backend) (rate(gen_ai_server_request_duration_seconds_bucket[5m])))",
            "histogram_quantile: no label le",
        ),
        (
            "histogram_quantile(0.9, rate(gen_ai_server_request_duration_seconds_count[5m]))",
            "histogram_quantile: no label le",
        ),
        ("sum by (status) (sum by (backend) (rate(aigw_requests_total[5m])))", "no label status"),
        (
            "sum by (backend) (rate(aigw_requests_total[5m])) / sum(rate(aigw_requests_total[5m]))",
            "no pair would ever match",
        ),
        (
            "sum by (guard) (rate(aigw_guard_actions_total[5m])) / on (backend) "
            "sum(rate(aigw_requests_total[5m]))",
            "no label backend",
        ),
        ("predict_linear(aigw_requests_total[5m], 60)", "not known"),
    ],
)
def test_the_checks_catch_what_would_show_no_data(exported, expr, problem):
    _, errors = check(expr, exported)
    assert any(problem in e for e in errors), errors


# --- the dashboard's queries ------------------------------------------------------------------


@pytest.mark.parametrize("expr, legend", _all_queries())
def test_every_query_selects_exported_series_with_their_labels(exported, expr, legend):
    assert selectors(parse(expr)), "a panel query selects no series"
    labels, errors = check(expr, exported)
    assert errors == []
    # The legend can only print labels the query's result still has.
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    assert labels not in (SCALAR, UNKNOWN)
    assert not isinstance(labels, str)  # so a label set
    assert used <= labels, f"legend {legend!r} names {sorted(used - labels)}, result has {sorted(labels)}"


def test_template_variables_name_exported_labels(dashboard, exported):
    variables = dashboard["templating"]["list"]
    assert {v["name"] for v in variables} == {"route", "backend"}
    for var in variables:
        query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
        m = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", query)
        assert m, query
        metric, label = m.groups()
        assert label == var["name"] and label in exported.get(metric, ()), query
        assert var["datasource"]["uid"] == dashboard_uid_of_datasource(dashboard)
    # Every $variable a query uses is defined (or one of Grafana's own $__ ones).
    defined = {v["name"] for v in variables}
    for title, target in _queries(dashboard):
        for name in re.findall(r"\$\{?(\w+)", target["expr"]):
            assert name.startswith("__") or name in defined, f"{title}: ${name} is not defined"


def dashboard_uid_of_datasource(dashboard) -> str:
    uids = {p["datasource"]["uid"] for p in _panels(dashboard) if "datasource" in p}
    uids |= {t["datasource"]["uid"] for _, t in _queries(dashboard)}
    assert len(uids) == 1, f"the dashboard uses several datasources: {uids}"
    return uids.pop()


def _find(
    dashboard, metric: str, *, by: set[str] | None = None, matcher: str | None = None, quantile: bool = False
) -> list[tuple[str, dict]]:
    """Panels/targets whose query selects `metric`, grouped `by` and matching as asked."""
    found = []
    for title, target in _queries(dashboard):
        tree = parse(re.sub(r"\$\w+", "5m", target["expr"]))
        nodes = list(walk(tree))
        if metric not in {s.metric for s in selectors(tree)}:
            continue
        if by is not None and not any(isinstance(n, Aggregation) and set(n.by or ()) == by for n in nodes):
            continue
        if matcher is not None and matcher not in target["expr"]:
            continue
        if quantile and not any(isinstance(n, Call) and n.name == "histogram_quantile" for n in nodes):
            continue
        found.append((title, target))
    return found


def _quantile(expr: str) -> str:
    """The φ of a histogram_quantile query."""
    m = re.match(r"histogram_quantile\(([\d.]+)", expr)
    assert m is not None, expr
    return m.group(1)


def _units(dashboard, found) -> set[str]:
    titles = {title for title, _ in found}
    return {
        p["fieldConfig"]["defaults"].get("unit")
        for p in _panels(dashboard)
        if p["type"] != "row" and p["title"] in titles
    }


def test_the_dashboard_shows_what_operators_need(dashboard):
    by_status = _find(dashboard, "aigw_requests_total", by={"status"})
    by_backend = _find(dashboard, "aigw_requests_total", by={"backend", "gen_ai_provider_name"})
    retries = _find(dashboard, "aigw_attempts_total", by={"backend"}, matcher='retry="true"')
    attempts = _find(dashboard, "aigw_attempts_total", by={"backend", "status"})
    tokens = _find(dashboard, "aigw_tokens_total", by={"gen_ai_response_model", "gen_ai_token_type"})
    guards = _find(dashboard, "aigw_guard_actions_total", by={"action", "entity", "direction"})
    for found in (by_status, by_backend, retries, attempts, tokens, guards):
        assert found
        assert all("rate(" in t["expr"] for _, t in found)
    assert _units(dashboard, by_status + by_backend + retries + attempts) == {"reqps"}
    assert "tok/s" in _units(dashboard, tokens).pop()

    for metric in (
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_server_request_duration_seconds_bucket",
    ):
        found = _find(dashboard, metric, quantile=True)
        quantiles = {_quantile(t["expr"]) for _, t in found}
        assert {"0.5", "0.95"} <= quantiles, metric
        assert _units(dashboard, found) == {"s"}
        legends = [t["legendFormat"] for _, t in found]
        assert all(re.match(r"p\d+", legend) for legend in legends), legends


def test_dashboard_is_well_formed(dashboard):
    assert dashboard["uid"] == "aigw-overview"  # stable: links and the home page use it
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard or dashboard["id"] is None  # Grafana assigns it
    panels = list(_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel.get("description"), f"{panel['title']} explains itself"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']} has a unit"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t.get("legendFormat") for t in panel["targets"]), panel["title"]
    # Panels do not overlap.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        mine = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


# --- provisioning, compose and Prometheus agree -----------------------------------------------


def test_dashboard_uses_the_provisioned_datasource(dashboard, datasource):
    assert datasource["type"] == "prometheus" and datasource["uid"]
    assert dashboard_uid_of_datasource(dashboard) == datasource["uid"]
    refs = [p["datasource"] for p in _panels(dashboard) if "datasource" in p]
    refs += [t["datasource"] for _, t in _queries(dashboard)]
    assert all(ref["type"] == "prometheus" for ref in refs)


def test_datasource_points_at_the_prometheus_service(datasource, compose):
    url = re.fullmatch(r"http://([\w-]+):(\d+)/?", datasource["url"])
    assert url, datasource["url"]
    host, port = url.group(1), url.group(2)
    assert host in compose["services"]
    prometheus = compose["services"][host]
    assert prometheus["image"].startswith("prom/prometheus:")
    # Prometheus listens on 9090 unless told otherwise; the published port maps onto it.
    listen = next(
        (a.split(":")[-1] for a in prometheus.get("command", []) if a.startswith("--web.listen-address=")),
        "9090",
    )
    assert port == listen
    assert any(p.split(":")[-1] == listen for p in prometheus.get("ports", []))
    assert (
        datasource["jsonData"]["timeInterval"]
        == yaml.safe_load(PROMETHEUS.read_text())["global"]["scrape_interval"]
    ), "Grafana's $__rate_interval needs the scrape interval"


def test_grafana_mounts_the_provisioning_and_the_dashboard_folder(compose):
    grafana = compose["services"]["grafana"]
    mounts = _mounts(grafana)
    provisioning = PurePosixPath("/etc/grafana/provisioning")
    for kind, path in (("datasources", DATASOURCES), ("dashboards", PROVIDERS)):
        host = mounts.get(str(provisioning / kind))
        assert host and (ROOT / host).resolve() == path.parent, f"{kind} provisioning is not mounted"
    [provider] = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"].rstrip("/")
    assert folder in mounts, f"the provider reads {folder}, which compose does not mount"
    assert (ROOT / mounts[folder]).resolve() == DASHBOARD.parent
    # The home page is the dashboard, through the same mount.
    home = PurePosixPath(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == folder and (DASHBOARD.parent / home.name) == DASHBOARD
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert any(p.split(":")[-1] == "3000" for p in grafana["ports"])


def _processor_args(compose):
    command = compose["services"]["processor"]["command"]
    return build_parser().parse_args(command)


def test_prometheus_scrapes_the_processor_where_it_listens(compose):
    prometheus = compose["services"]["prometheus"]
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    assert (ROOT / _mounts(prometheus)[config_path]).resolve() == PROMETHEUS
    config = yaml.safe_load(PROMETHEUS.read_text())
    args = _processor_args(compose)
    assert args.metrics_host == "0.0.0.0", "in compose the processor must listen beyond loopback"
    assert args.metrics_port > 0
    targets = {
        target: job
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    job = targets.get(f"processor:{args.metrics_port}")
    assert job, f"no scrape target processor:{args.metrics_port} in {sorted(targets)}"
    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "processor" in compose["services"]
    assert str(args.metrics_port) in compose["services"]["processor"].get("expose", [])


async def test_the_scraped_path_serves_the_processor_metrics(compose):
    """The processor's metrics server answers Prometheus's path with the series the dashboard reads."""
    job = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"][0]
    port = free_port()
    runner = await extproc.metrics.start_server("127.0.0.1", port)
    try:
        url = f"http://127.0.0.1:{port}{job.get('metrics_path', '/metrics')}"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        await runner.cleanup()
    families = {f.name for f in text_string_to_metric_families(body)}
    defined = [m for m in vars(extproc.metrics).values() if isinstance(m, MetricWrapperBase)]
    assert defined
    for metric in defined:
        assert metric._name in families, f"{metric._name} is missing from the scrape"
