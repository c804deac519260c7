"""The house rules of `bot/`, read from every import (those under `TYPE_CHECKING` included):
surfaces reach the rest only through `core` (and the row types and leaves); `worker` never
imports `surfaces`; `core` never imports `surfaces`, `worker` or the composition root; and no
module of `bot/` or `agents/` takes part in an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Modules every room may use: configuration, logging, metrics, the schedule, repository paths,
# the row types, and the analysis library.
LEAVES = (
    "bot.settings",
    "bot.config",
    "bot.logs",
    "bot.metrics",
    "bot.schedule",
    "bot.repos",
    "bot.store.models",
    "bot.store.types",
    "agents",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, module: str | None = None) -> set[str]:
    """Every module `path` (the module `module`) imports, absolute, wherever the import
    statement is."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (module or module_name(path)).rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("bot", "agents")}


def sources(*tops: str) -> dict[str, set[str]]:
    return {
        module_name(path): imports(path)
        for top in tops
        for path in (ROOT / top).rglob("*.py")
        if "migrations" not in path.parts
    }


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_surfaces_reach_the_rest_only_through_core() -> None:
    allowed = ("bot.core", "bot.surfaces", *LEAVES)
    offenders = {
        module: sorted(name for name in found if not _within(name, allowed))
        for module, found in sources("bot").items()
        if module.startswith("bot.surfaces")
    }
    assert {m: names for m, names in offenders.items() if names} == {}


def test_the_worker_never_imports_a_surface_and_the_core_nothing_above_it() -> None:
    modules = sources("bot")
    worker = {
        m: sorted(n for n in found if _within(n, ("bot.surfaces", "bot.app", "bot.cli")))
        for m, found in modules.items()
        if m.startswith("bot.worker")
    }
    core = {
        m: sorted(
            n for n in found if _within(n, ("bot.surfaces", "bot.worker", "bot.app", "bot.cli"))
        )
        for m, found in modules.items()
        if m.startswith("bot.core")
    }
    assert {m: n for m, n in worker.items() if n} == {}
    assert {m: n for m, n in core.items() if n} == {}


def test_no_import_cycles_in_bot_or_agents() -> None:
    modules = sources("bot", "agents")
    known = set(modules)

    def edges(module: str) -> set[str]:
        out = set()
        for name in modules[module]:
            # `from bot.core import actor` names a module; `from bot.core.actor import Actor`
            # names a class: keep the longest known module prefix.
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if candidate in known and candidate != module:
                    if not module.startswith(candidate + "."):  # a package's own __init__
                        out.add(candidate)
                    break
        return out

    graph = {module: edges(module) for module in modules}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_rules_would_see_a_broken_import(tmp_path: Path) -> None:
    """The reader finds imports under TYPE_CHECKING and relative ones."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from bot.worker.jobs import Jobs\n"
        "from ..store import runs\n"
    )
    found = imports(source, module="bot.surfaces.probe")
    assert "bot.worker.jobs" in found and "bot.store.runs" in found
