"""Fails when extproc's packages import each other in a cycle.

Nodes are the sub-packages (`config/`, `guards/`, `providers/`, ...) and the top-level
modules; an edge is any import between two of them, found by reading the source (nothing is
imported). A cycle between packages means neither can be understood, tested or moved
without the other; the leaf helpers (config_model.py, secrets.py, wire.py, errors.py) exist
so that none is needed.

    python scripts/import_cycles.py        # exit 1 and the edges of each cycle
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "extproc"


def node(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and (ROOT / parts[1]).is_dir():
        return parts[1] + "/"
    return parts[1] if len(parts) > 1 else "(extproc)"


def imports(path: Path, module: str, is_package: bool) -> list[str]:
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            out += [target] if n.module else [f"{target}.{a.name}" for a in n.names]
        elif isinstance(n, ast.Import):
            out += [a.name for a in n.names]
    return [t for t in out if t.startswith("extproc.")]


def graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], tuple[str, str]]]:
    edges: dict[str, set[str]] = defaultdict(set)
    why: dict[tuple[str, str], tuple[str, str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        for target in imports(path, module, is_package):
            a, b = node(module), node(target)
            if a != b:
                edges[a].add(b)
                why.setdefault((a, b), (module, target))
    return edges, why


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in list(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main() -> int:
    edges, why = graph()
    bad = cycles(edges)
    for component in bad:
        print("import cycle:", " <-> ".join(component))
        for a in component:
            for b in sorted(edges[a] & set(component)):
                print(f"    {a} -> {b}  ({why[(a, b)][0]} imports {why[(a, b)][1]})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
