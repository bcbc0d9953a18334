"""The import rules of docs/architecture.md, read from the source: a change that breaks one fails here.

Each rule names what a layer may import; an import anywhere in a module counts (a lazy import inside a function
is still a dependency), except where a rule says "at module level".
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trace_ckpt"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def _imports(path: Path, *, module_level: bool = False) -> set[str]:
    """The absolute module names ``path`` imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(path.read_text())
    # at module level: the statements of the module itself (not `if TYPE_CHECKING:` blocks, never run)
    nodes = tree.body if module_level else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


# layer -> the trace_ckpt layers it may import (besides itself)
MAY_IMPORT = {
    "format": {"errors"},
    "storage": {"errors", "_os"},
    "codec": {"errors", "_os", "format", "quant"},
    "quant": {"format"},
    "settings": {"signing", "settings_schema"},
    "settings_schema": {"settings"},
    "signing": {"errors", "settings", "settings_schema"},
    "trust": {"errors", "format", "settings", "signing"},
    "errors": set(),
    "_os": set(),
}


def _ours(names: set[str]) -> set[str]:
    return {_layer(n) for n in names if n.startswith("trace_ckpt.")}


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_a_layer_imports_only_what_is_below_it(layer: str) -> None:
    wrong = {
        module: sorted(_ours(_imports(path)) - MAY_IMPORT[layer] - {layer})
        for module, path in _modules().items()
        if _layer(module) == layer
    }
    assert not {m: w for m, w in wrong.items() if w}, "imports against docs/architecture.md's direction"


def test_only_the_rdagent_package_imports_rdagent() -> None:
    outside = [
        module
        for module, path in _modules().items()
        if not module.startswith("trace_ckpt.rdagent")
        and any(n == "rdagent" or n.startswith("rdagent.") for n in _imports(path))
    ]
    assert outside == []


def test_nothing_below_the_integration_imports_it() -> None:
    below = [
        module
        for module, path in _modules().items()
        if _layer(module) not in {"rdagent", "cli", "trace_ckpt", "__main__"}
        and any(n.startswith("trace_ckpt.rdagent") for n in _imports(path))
    ]
    assert below == []


@pytest.mark.parametrize("heavy", ["pandas", "pyarrow", "numpy", "rdagent"])
def test_views_and_the_vocabulary_import_no_heavy_library_at_module_level(heavy: str) -> None:
    light = [m for m in _modules() if _layer(m) in {"views", "quant", "format", "ckpt", "trust", "settings"}]
    heavy_at_top = [
        m
        for m in light
        if any(n == heavy or n.startswith(heavy + ".") for n in _imports(_modules()[m], module_level=True))
    ]
    assert heavy_at_top == []


def test_no_module_is_over_400_lines() -> None:
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, "split these by subject (docs/architecture.md)"


def test_the_rules_see_real_imports() -> None:
    """The checks above would pass vacuously on a parser that found nothing: they do find the known edges."""
    mods = _modules()
    assert "trace_ckpt.format.reader" in _imports(mods["trace_ckpt.ckpt"])
    assert any(n.startswith("rdagent") for n in _imports(mods["trace_ckpt.rdagent.sessions"]))
    assert "pandas" in _imports(mods["trace_ckpt.codec.tables"], module_level=True)
    assert _layer("trace_ckpt.codec.graph") == "codec" and _layer("trace_ckpt.quant") == "quant"
