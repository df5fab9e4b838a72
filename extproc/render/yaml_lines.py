"""YAML loading that remembers where every value came from, so errors name the line."""

from __future__ import annotations

from typing import Any

import yaml


class _LineLoader(yaml.SafeLoader):
    """Safe YAML, except that dates stay strings (an unquoted `apiVersion: 2024-10-21` is
    meant as text) and a key given twice is an error rather than silently the last one."""


_LineLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(f"key '{key}' is given twice (line {line})")
        self.problem = f"key '{key}' is given twice"
        self.problem_mark = type("Mark", (), {"line": line - 1})()


def load(text: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML; return the data and {path: line} (1-based) for every mapping key and
    sequence item, paths as tuples of keys and indexes."""
    node = yaml.compose(text, Loader=_LineLoader)
    lines: dict[tuple, int] = {}
    if node is None:
        return None, lines

    def walk(n: yaml.Node, path: tuple) -> None:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            seen = set()
            for key, value in n.value:
                k = key.value
                if k in seen:
                    raise DuplicateKey(k, key.start_mark.line + 1)
                seen.add(k)
                lines[(*path, k)] = key.start_mark.line + 1
                walk(value, (*path, k))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i))

    walk(node, ())
    return yaml.load(text, Loader=_LineLoader), lines


def line_of(lines: dict[tuple, int], loc: tuple) -> int | None:
    """The line of the deepest part of `loc` that exists in the source."""
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())
