"""The package's shape, read from its source: one direction of imports, a core without Spark, recipes
listed only in the registry; and the commands documented as Spark-free run where pyspark cannot be imported."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from recsys_spark.core.registry import RECIPES

PACKAGE = REPO / "recsys_spark"
CORE_MAY_IMPORT = {"recsys_spark.errors", "recsys_spark.schema", "recsys_spark.killpoints"}  # Spark-free modules outside core/


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Every module a module imports, at any depth of its code (imports inside functions count too)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from a import b` imports module a.b when there is one
                out.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: imports(tree, set(trees)) for name, tree in trees.items()}


def test_the_import_graph_has_no_cycle(graph):
    inside = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for d in sorted(inside[m]):
            if state.get(d) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = "done"

    for m in sorted(inside):
        if m not in state:
            visit(m)


def test_the_core_imports_no_spark_and_nothing_above_it(graph):
    for name, deps in graph.items():
        if not name.startswith("recsys_spark.core"):
            continue
        spark = sorted(d for d in deps if d.split(".")[0] in ("pyspark", "delta", "py4j"))
        assert not spark, f"{name} imports {spark}"
        above = sorted(d for d in deps if d.startswith("recsys_spark") and not d.startswith("recsys_spark.core")
                       and d not in CORE_MAY_IMPORT)
        assert not above, f"{name} imports {above}, outside the core"
    for name in CORE_MAY_IMPORT:
        assert not {d for d in graph[name] if d.split(".")[0] in ("pyspark", "delta", "py4j")}, name


def test_inference_and_evaluation_never_depend_on_training(graph):
    for name, deps in graph.items():
        if name.startswith(("recsys_spark.inference", "recsys_spark.evaluation")):
            assert "recsys_spark.solutions.train" not in deps, name


def test_recipes_are_listed_only_in_the_registry():
    """No collection in the package outside the registry names three or more recipes. (Scripts may hold
    tables of data about some recipes, such as tuning grids.)"""
    names = {n for e in RECIPES.values() for n in (e.name, *e.aliases)}
    sources = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    for name, path in sources.items():
        if name == "recsys_spark.core.registry":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Dict, ast.List, ast.Set, ast.Tuple)):
                values = node.keys if isinstance(node, ast.Dict) else node.elts
                listed = {v.value for v in values if isinstance(v, ast.Constant) and v.value in names}
                assert len(listed) < 3, f"{path}:{node.lineno} lists recipes {sorted(listed)}; read the registry"


# Run in a fresh interpreter that refuses to import pyspark (as on a machine without it).
NO_SPARK = textwrap.dedent("""
    import importlib.abc, sys
    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("pyspark", "delta", "py4j"):
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
    sys.meta_path.insert(0, Refuse())
""")


def run_without_spark(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_SPARK + textwrap.dedent(code)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_validate_and_filter_validate_run_without_pyspark(tmp_path):
    config = REPO / "configs" / "synthetic-ecommerce.yaml"
    done = run_without_spark(f"""
        from recsys_spark.cli import main
        assert main(["validate", "--config", {str(config)!r}]) == 0
        assert main(["filter", "validate", "--config", {str(config)!r},
                     'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")']) == 0
        assert main(["filter", "validate", "--config", {str(config)!r},
                     'INCLUDE ItemID WHERE Items.NOPE IN ("x")']) == 2
        import pyspark
    """, tmp_path)
    assert "No module named 'pyspark' (hidden by the test)" in done.stderr, done.stderr
    assert "synthetic-ecommerce.yaml: valid" in done.stdout, done.stdout
    assert "Items has no field NOPE" in done.stderr, done.stderr


def test_the_core_loads_a_version_and_scores_without_pyspark(tmp_path):
    """Every core module imports, and a saved version answers a request, in a process without Spark (what
    the real-time server does)."""
    done = run_without_spark(f"""
        import importlib, json, pkgutil
        import numpy as np
        import recsys_spark.core as core
        for m in pkgutil.walk_packages(core.__path__, "recsys_spark.core."):
            importlib.import_module(m.name)
        from recsys_spark.core.kernels.lines import json_lines
        from recsys_spark.core.kernels.scorer import KernelSettings, score_batch, user_requests
        from recsys_spark.core.models.base import UserBlock
        from recsys_spark.core.models.ranked import RankedItemsModel
        from recsys_spark.core.store import ArrowFiles, VersionStore
        import pyarrow as pa

        store = VersionStore({str(tmp_path)!r}, ArrowFiles())
        model = RankedItemsModel(np.array(["a", "b", "c"], dtype=object), np.array([1.0, 5.0, 3.0]))
        saved = store.save("popular", model, {{"recipe": "popularity-count", "settings": {{}}}})
        loaded = store.load_model(store.get("popular"))
        out = score_batch(loaded, user_requests(pa.array(["u1"])), UserBlock.from_lists([[1]]), KernelSettings(2))
        print(json_lines(out).column("value")[0].as_py())
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line == {"input": {"userId": "u1"}, "output": {"recommendedItems": ["c", "a"], "scores": [3.0, 1.0]},
                    "error": None}
