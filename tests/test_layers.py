"""The layers of the tree, checked from the source: imports flow one way, with no cycles.

Innermost first (docs/architecture.md, "Layers"):

0. pure types: ``crdtkv.crdts``, ``crdtkv.errors``, ``crdtkv.limits``, ``crdtkv.cliutil``;
1. the replica core and the op table, sessions, storage, and the replication
   protocol (``crdtkv.replica``, ``crdtkv.ops``, ``crdtkv.sessions``,
   ``crdtkv.storage``, ``replication`` but its HTTP shell);
2. the node core (``crdtkv.node.core``);
3. the shells: the asyncio node, the HTTP API, the replication transport,
   configuration and metrics;
4. the tools, the command line, the client, and the simulator.

A module may import its own layer and the layers below, never one above
(function-level imports, which load lazily, and ``TYPE_CHECKING`` blocks
count too: they would still tie the layers together).  The module graph of
top-level imports has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crdtkv", "replication", "simulations")
LAYERS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("crdtkv.errors", "crdtkv.limits", "crdtkv.crdts", "crdtkv.cliutil", "crdtkv.versions")),
    (
        1,
        (
            "crdtkv.replica",
            "crdtkv.cluster",
            "crdtkv.ops",
            "crdtkv.sessions",
            "crdtkv.storage",
            "replication",
            # RESP's pure pieces, which the op table's RESP column uses: reply values,
            # argument parsing, the direct forms of hot reads.
            "crdtkv.resp.values",
            "crdtkv.resp.args",
            "crdtkv.resp.fast",
            "crdtkv.resp.hash_zset_args",
            "crdtkv.resp.vset_args",
            # vector sets: the index, FILTER and search (derived, never replicated)
            "crdtkv.vectors",
        ),
    ),
    (2, ("crdtkv.node.core",)),
    (
        3,
        (
            "crdtkv.node",
            "crdtkv.auth",
            "crdtkv.api",
            "replication.http",
            "crdtkv.config",
            "crdtkv.tls",
            "crdtkv.metrics",
            "crdtkv.resp",
            "crdtkv.vectors.builder",  # the background build: threads, clock, logging
        ),
    ),
    (4, ("crdtkv", "crdtkv.tools", "crdtkv.cli", "crdtkv.client", "simulations")),
]


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = ast.iter_child_nodes(tree) if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            target = _resolve(n)
            if target is not None:
                found.add(target)
    return found


def _is_parent(package: str, module: str) -> bool:
    """Python loads a module's parent packages first whatever it imports: not an edge."""
    return module == package or module.startswith(package + ".")


def _layer(module: str) -> int:
    best = (-1, -1)  # (prefix length, layer)
    for layer, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best[0]:
                best = (len(p), layer)
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def upward_imports() -> list[str]:
    bad = []
    for module, path in sorted(MODULES.items()):
        mine = _layer(module)
        for target in sorted(_imports(path, top_level_only=False)):
            if _is_parent(target, module):
                continue
            if _layer(target) > mine:
                bad.append(f"{module} (layer {mine}) imports {target} (layer {_layer(target)})")
    return bad


def cycles() -> list[list[str]]:
    graph = {
        m: {t for t in _imports(p, top_level_only=True) if not _is_parent(t, m)}
        for m, p in MODULES.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_imports_only_flow_down_the_layers() -> None:
    assert upward_imports() == []


def test_the_module_graph_has_no_import_cycle() -> None:
    assert cycles() == []


def test_the_checks_can_fail(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A pure type importing the node core, and two modules importing each other.
    fake = dict(MODULES)
    monkeypatch.setattr(
        "tests.test_layers._imports",
        lambda path, top_level_only: (
            {"crdtkv.node.core"}
            if path == fake["crdtkv.crdts.hll"]
            else {"crdtkv.crdts.hlc"}
            if path == fake["crdtkv.crdts.causal"]
            else {"crdtkv.crdts.causal"}
            if path == fake["crdtkv.crdts.hlc"]
            else set()
        ),
    )
    assert upward_imports() == ["crdtkv.crdts.hll (layer 0) imports crdtkv.node.core (layer 2)"]
    assert cycles() == [["crdtkv.crdts.causal", "crdtkv.crdts.hlc"]]
