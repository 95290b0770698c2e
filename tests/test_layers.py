"""The tree shows the architecture: each package imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# Lower layers first; a module may import its own package and any lower layer.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {"entrypoint", "entrypoint.errors", "entrypoint.meta", "entrypoint.shipped", "entrypoint.ports"}
    ),
    frozenset({"entrypoint.state", "entrypoint.secrets", "entrypoint.caches"}),
    frozenset({"entrypoint.plan"}),
    frozenset({"entrypoint.hub", "entrypoint.engine", "entrypoint.cluster"}),
    frozenset({"entrypoint.inputs"}),
    frozenset({"entrypoint.launch", "entrypoint.show", "entrypoint.doctor", "entrypoint.bench", "server"}),
    frozenset({"entrypoint.cli", "entrypoint.parser", "entrypoint.__main__"}),
)
# What the sidecar may use of the launcher: the shared modules, the option declarations,
# the redaction of secrets and the device readings.
SERVER_USES = frozenset(
    {"entrypoint", "entrypoint.errors", "entrypoint.state", "entrypoint.plan.options"}
    | {"entrypoint.plan.redact", "entrypoint.inputs.device"}
)


def unit(module: str) -> str:
    """The layer unit of a module: its package under entrypoint, or the top module itself."""
    parts = module.split(".")
    if parts[0] == "server":
        return "server"
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def level(module: str) -> int:
    name = unit(module)
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def is_module(name: str) -> bool:
    where = REPO.joinpath(*name.split("."))
    return where.with_suffix(".py").is_file() or where.is_dir()


def imports(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] in ("entrypoint", "server"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in ("entrypoint", "server"))
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for root in ("entrypoint", "server"):
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append((".".join(parts), path))
    return out


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for module, path in modules():
        mine = level(module)
        for target in imports(path, module):
            if unit(target) != unit(module) and level(target) > mine:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_the_hub_knows_nothing_of_plans_and_the_server_only_the_shared_modules() -> None:
    hub = [
        f"{m} imports {t}"
        for m, p in modules()
        if unit(m) == "entrypoint.hub"
        for t in imports(p, m)
        if unit(t) == "entrypoint.plan"
    ]
    assert hub == []
    server = {
        t for m, p in modules() if unit(m) == "server" for t in imports(p, m) if t.startswith("entrypoint")
    }
    assert server and server <= SERVER_USES, sorted(server - SERVER_USES)


def test_every_module_belongs_to_a_layer() -> None:
    assert all(level(module) >= 0 for module, _ in modules())
