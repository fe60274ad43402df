"""The architecture, checked from the source: layers, no import cycles, no private reach-ins.

Static (``ast``) so that lazy imports inside functions count as much as top-level ones.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("predictor", "pipelines", "serve")
#: What the pure core may not import: the edges, and the libraries that do I/O.
EDGE_IMPORTS = (
    "pipelines",
    "serve",
    "kafka",
    "confluent_kafka",
    "fastapi",
    "uvicorn",
    "httpx",
    "mlflow",
    "sqlalchemy",
    "pyarrow",
    "requests",
    "prometheus_client",
)
#: Vendor constants spelt with a leading underscore by their library (librdkafka's error
#: codes), not private attributes of ours.
VENDOR_PRIVATE = {"KafkaError"}
#: The one module allowed into a library's internals, and exactly which: the columnar
#: reader of kafka-python's fetched record batches (docs/kafka.md, "Columnar fetch"; pinned
#: to kafka-python's own reader by tests/unit/test_record_batches.py and
#: tests/integration/test_kafka_columnar_reads.py).
VENDOR_INTERNALS = {
    "pipelines.kafka.record_batches": {"_fetcher", "_maybe_uncompress", "_buffer", "_pos"},
}


@cache
def modules() -> dict[str, ast.Module]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            parts = f.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = ast.parse(f.read_text(), filename=str(f))
    return out


def imported(tree: ast.Module) -> set[str]:
    """Every module name an ``import`` anywhere in ``tree`` names (absolute imports)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_the_core_imports_no_edge() -> None:
    bad = [
        f"{mod} imports {name}"
        for mod, tree in modules().items()
        if mod.split(".")[0] == "predictor"
        for name in sorted(imported(tree))
        if name.split(".")[0] in EDGE_IMPORTS
    ]
    assert not bad, bad


def test_no_import_cycle() -> None:
    mods = modules()
    graph = {m: {n for n in imported(t) if n in mods and n != m} for m, t in mods.items()}
    # A package's own __init__ importing its submodules is not a cycle of concepts.
    for m in graph:
        graph[m] = {n for n in graph[m] if not m.startswith(n + ".")}
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, attributes set on self/cls."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if n.startswith("_")}


def test_no_module_reads_another_modules_private_attributes() -> None:
    bad = []
    for mod, tree in modules().items():
        own = _own_private_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__") or attr in own:
                continue
            if attr in VENDOR_INTERNALS.get(mod, ()):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ({"self", "cls"} | VENDOR_PRIVATE):
                continue
            bad.append(f"{mod}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, bad


def test_the_checks_can_fail() -> None:
    """The detectors above find what they look for (so a pass means something)."""
    src = "import pipelines.x\nfrom serve import y\nz = other._secret\n"
    tree = ast.parse(src)
    assert {"pipelines.x", "serve", "serve.y"} <= imported(tree)
    assert "_secret" not in _own_private_names(tree)
