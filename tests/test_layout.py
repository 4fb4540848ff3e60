"""The package's layers: the core loads no web or CLI library, no module imports one that imports it back, and no
private names of other packages or modules are used."""

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "langgraph_moa"
WAYS_IN = ("fastapi", "starlette", "langserve", "typer", "rich", "uvicorn", "sse_starlette")


@functools.cache  # the baseline is the same for every module: one interpreter for it, not one per test
def _loaded_ways_in(imports: str) -> set[str]:
    code = f"import sys\nimport {imports}\nprint(','.join(m for m in sys.modules if m.split('.')[0] in {WAYS_IN!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(filter(None, out.stdout.strip().split(",")))


@pytest.mark.parametrize("module", ["langgraph_moa.graph", "langgraph_moa", "langgraph_moa.chat_model"])
def test_the_core_loads_no_web_or_cli_library(module: str) -> None:
    # httpx loads rich for its own command line when rich is installed: that is the dependencies' doing
    baseline = _loaded_ways_in("httpx, langgraph.graph, langchain_openai, langchain_together")
    assert "fastapi" not in baseline and "typer" not in baseline
    assert _loaded_ways_in(module) - baseline == set(), f"importing {module} loads a web or CLI library"


CORE = [
    "graph.py",
    "nodes.py",
    "node_names.py",
    "routing.py",
    "calls.py",
    "usage.py",
    "strategies.py",
    "staircase.py",
    "cache.py",
    "state.py",
    "prompts.py",
    "config.py",
    "context.py",
    "presets.py",
    "pricing.py",
    "errors.py",
    "paths.py",
    "stream.py",
    "seeds.py",
    "stragglers.py",
    "provisional.py",
    "providers",
]


def test_the_core_never_imports_a_way_in() -> None:
    offenders = []
    for name in CORE:
        for path in [PACKAGE / name] if name.endswith(".py") else sorted((PACKAGE / name).glob("*.py")):
            text = path.read_text()
            for way_in in (
                "langgraph_moa.serve",
                "langgraph_moa.cli",
                "langgraph_moa.chat_model",
                "langgraph_moa.eval",
            ):
                if way_in in text:
                    offenders.append(f"{path.name} imports {way_in}")
    assert offenders == []


# Private names used where no public API exists, each explained in a comment beside it.
KNOWN_PRIVATE = {
    ("providers/credentials.py", "_BUILTIN_PROVIDERS"),
    ("providers/redacted_model.py", "var_child_runnable_config"),
}


def test_no_private_names_of_other_packages() -> None:
    """Private imports break on upgrades; where no public name exists, the code says so next to it."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in ("_internal", "_BUILTIN_PROVIDERS", '"nostream"', "var_child_runnable_config"):
                if name in line and (where, name) not in KNOWN_PRIVATE:
                    offenders.append(f"{where}:{number}: {line.strip()}")
    assert offenders == []


def test_the_private_provider_table_is_still_there() -> None:
    """Pins LangChain's private provider table: if an upgrade drops it, the typo check silently stops."""
    from langgraph_moa.providers import supported_providers

    known = supported_providers()
    assert known is not None and {"openai", "together", "anthropic"} <= known


def _private_uses(path: Path) -> list[str]:
    """The private names (``_name``) that ``path`` takes from other modules of the package.

    Both spellings: ``from langgraph_moa.x import _name`` (relative imports too) and
    ``x._name`` on a module imported from the package.
    """
    package = list(path.relative_to(PACKAGE.parent).parent.parts)  # for relative imports
    modules: set[str] = set()  # local names bound to modules of the package
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.asname and a.name.startswith("langgraph_moa.")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            if source.split(".")[0] != "langgraph_moa":
                continue
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{node.lineno}: from {source} import {alias.name}")
                target = PACKAGE.parent.joinpath(*source.split("."), alias.name)
                if target.with_suffix(".py").exists() or (target / "__init__.py").exists():
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_a_private_name_of_another() -> None:
    """A name one module shares with another is public; a leading underscore means "this module only"."""
    offenders = [
        f"{path.relative_to(PACKAGE)}:{use}" for path in sorted(PACKAGE.rglob("*.py")) for use in _private_uses(path)
    ]
    assert offenders == []


def _module_of(name: str) -> str | None:
    """``name`` if it is a module of the package (a file or a package with its ``__init__``), else ``None``."""
    target = PACKAGE.parent.joinpath(*name.split("."))
    return name if target.with_suffix(".py").exists() or (target / "__init__.py").exists() else None


def _imports(path: Path) -> set[str]:
    """The modules of the package that ``path`` imports, at the top or inside a function."""
    package = list(path.relative_to(PACKAGE.parent).parent.parts)  # for relative imports
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {_module_of(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:  # a submodule by its name, else the module the name comes from
                found.add(_module_of(f"{source}.{alias.name}") or _module_of(source))
    return {name for name in found if name and name.split(".")[0] == "langgraph_moa"}


def test_the_modules_import_one_another_one_way() -> None:
    """No import circle, lazy imports inside functions included: each module builds only on those below it."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = _imports(path) - {name}
    done: set[str] = set()

    def circle_from(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for imported in sorted(graph.get(name, ())):
            if circle := circle_from(imported, [*path, name]):
                return circle
        done.add(name)
        return None

    circles = list(dict.fromkeys(" -> ".join(circle) for name in graph if (circle := circle_from(name, []))))
    assert circles == [], f"modules that import one another: {circles[:3]}"
