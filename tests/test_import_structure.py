"""The package's imports stay one-way: no cycle between pavenet modules (read statically, imports inside
functions included), and the checkpoint file I/O sits below both the checkpointer and the converter."""

import ast

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "projects" / "PAVENet" / "pavenet"


def _module_name(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph():
    """pavenet module -> the pavenet modules it imports (any import statement, also inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            deps.update(c for c in candidates if c in modules and c != name)
        graph[name] = deps
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _ignoring_package_inits(graph):
    # `pkg/__init__.py` re-exporting its own submodules is not a cycle a reader has to follow.
    return {
        m: {d for d in deps if not (m.startswith(d + ".") and d in graph)}
        for m, deps in graph.items()
    }


def test_no_import_cycles_between_pavenet_modules():
    graph = _ignoring_package_inits(_import_graph())
    assert len(graph) > 40 and "pavenet.evaluation.readers" in graph["pavenet.evaluation.poseval"]
    assert _cycles(graph) == []
    # the test sees a cycle when there is one
    graph["pavenet.checkpoint_io"] = graph["pavenet.checkpoint_io"] | {"pavenet.checkpoint"}
    assert _cycles(graph) == [["pavenet.checkpoint", "pavenet.checkpoint_io"]]


def test_checkpoint_io_sits_below_the_checkpointer_and_the_converter():
    graph = _import_graph()
    assert "pavenet.checkpoint_io" in graph["pavenet.checkpoint"]
    assert "pavenet.checkpoint_io" in graph["pavenet.apps.convert_official"]
    assert not any(d.startswith("pavenet.conversion") for d in graph["pavenet.checkpoint"])
    assert graph["pavenet.checkpoint_io"] <= {"pavenet.utils.atomic"}


def test_the_library_never_imports_a_program():
    """`pavenet.apps` (the programs behind tools/) may use every part of the library; no library module imports a
    program, so the library can be used without them."""
    graph = _import_graph()
    assert "pavenet.inference.predictor" in graph["pavenet.apps.benchmark.runs"]
    assert "pavenet.engine.trainer" in graph["pavenet.apps.quickstart"]
    library = [m for m in graph if not m.startswith("pavenet.apps")]
    assert len(library) > 40
    for module in library:
        assert not any(d.startswith("pavenet.apps") for d in graph[module]), module
