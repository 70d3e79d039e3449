"""Installing into an existing environment: setup.py declares every third-party module the package
imports, and docs/INSTALL.md's "own detectron2" command is the one the detectron2-main venv is built with."""

import ast
import importlib.metadata
import re
import sys

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "projects" / "PAVENet" / "pavenet"
INSTALL_COMMAND = "pip install --no-build-isolation -e '.[swin,deploy,kernel]'"
# Not declarable: detectron2 is not on the package registry under its own name (docs/INSTALL.md).
NOT_ON_REGISTRY = {"detectron2"}


def _setup_requirements():
    """Requirement names in setup.py's INSTALL_REQUIRES and EXTRAS_REQUIRE (read, not executed)."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    values = {
        t.id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name) and t.id in ("INSTALL_REQUIRES", "EXTRAS_REQUIRE")
    }
    reqs = list(values["INSTALL_REQUIRES"]) + [
        r for rs in values["EXTRAS_REQUIRE"].values() for r in rs
    ]
    return {_normalize(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in reqs}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level_modules():
    """{module: first file importing it} for every absolute import in the package, nested ones included."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path.relative_to(REPO_ROOT))
    return found


def test_setup_py_declares_every_third_party_import():
    declared = _setup_requirements()
    dists = importlib.metadata.packages_distributions()
    missing = []
    for module, where in _imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module == "pavenet" or module in NOT_ON_REGISTRY:
            continue
        names = {_normalize(d) for d in dists.get(module, [])}
        assert names, f"{where} imports {module!r}, which no installed distribution provides"
        if not names & declared:
            missing.append(f"{module} ({'/'.join(sorted(names))}, imported by {where})")
    assert not missing, f"setup.py does not declare: {', '.join(missing)}"


def test_the_documented_install_command_is_the_one_the_second_venv_runs():
    assert INSTALL_COMMAND in (REPO_ROOT / "docs" / "INSTALL.md").read_text()
    script = (REPO_ROOT / "scripts" / "setup_d2main.sh").read_text().replace("\\\n", " ")
    runs = [
        line
        for line in script.splitlines()
        if " -m pip " in line and not line.lstrip().startswith(("say", "#"))
    ]
    args = INSTALL_COMMAND.split("pip install ")[1]
    assert any(re.search(r" install .*" + re.escape(args) + r"(\s|$)", line) for line in runs), runs
