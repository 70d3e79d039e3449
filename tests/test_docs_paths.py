"""Every file the READMEs, docs/*.md and the tools' docstrings name exists, every config they name loads
with the project's loader, every relative Markdown link resolves, and every `python -m` module and
`make` target they name is there.

A path is what a reader would type: `tools/...`, `configs/...`, `docs/...`, `tests/...`, `scripts/...`,
`datasets/...`, `projects/...` from the repository root; `pavenet/...` from `projects/PAVENet/`; and a
package-relative module in backquotes (`data/dataset_mapper.py`), which must be a module of ours or of
detectron2 (docs/INSTALL.md names detectron2's). Brace lists (`configs/posetrack1{7,8}`) and globs
(`tests/test_golden*.py`) are expanded. `NOT_IN_REPO` lists the few paths that are deliberately not
files of this repository, each with the reason; anything else that does not resolve fails the test.
"""

import ast
import glob
import importlib.util
import itertools
import re
from pathlib import Path

import pytest

from pavenet.config import load_pavenet_config

from conftest import REPO_ROOT

PACKAGE_ROOT = REPO_ROOT / "projects" / "PAVENet"
ROOTED = re.compile(
    r"(?<![\w/.<-])((?:tools|configs|docs|tests|scripts|datasets|projects)/[\w./*{},-]*[\w*}/])"
)
PACKAGE = re.compile(r"(?<![\w/.-])(pavenet/[\w./*-]*[\w*/])")
MODULE = re.compile(r"`([a-z_]+(?:/[a-z_]+)*\.py)`")
PYTHON_M = re.compile(r"python -m ([\w.]+)")
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MAKE = re.compile(r"(?:`|^\s*)make ([a-z][\w-]*)", re.M)  # a command, not the verb in prose

# path -> why it is not a file of this repository (each is checked to be still needed)
NOT_IN_REPO = {
    "datasets/posetrack_synthetic": "written on first use by `make demo` (pavenet/data/synthetic.py)",
    "configs/videopose/2025-2-7/*_num_frames_5_*": "a folder of the official PAVE-Net repository",
    "configs/petr/README.md": "a file of the official PETR repository (hikvision-research/opera)",
}


READMES = ("README.md", "datasets/README.md", "projects/PAVENet/README.md")


def _markdown_files():
    return [REPO_ROOT / r for r in READMES] + sorted((REPO_ROOT / "docs").glob("*.md"))


def _doc_texts():
    """(name, text) of the READMEs, docs/*.md and the docstrings of tools/*.py."""
    out = [(str(p.relative_to(REPO_ROOT)), p.read_text()) for p in _markdown_files()]
    for tool in sorted((REPO_ROOT / "tools").glob("*.py")):
        tree = ast.parse(tool.read_text())
        nodes = [tree] + [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))
        ]
        docs = [ast.get_docstring(n) or "" for n in nodes]
        out.append((f"tools/{tool.name}", "\n".join(docs)))
    return out


def _expand_braces(path):
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return list(
        itertools.chain.from_iterable(
            _expand_braces(path[: m.start()] + alt + path[m.end() :])
            for alt in m.group(1).split(",")
        )
    )


def _exists(root: Path, path: str) -> bool:
    return any(glob.glob(str(root / p)) for p in _expand_braces(path.rstrip("/")))


def _excused(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in NOT_IN_REPO)


def _named_paths():
    found = []  # (source, path, root)
    for source, text in _doc_texts():
        for m in ROOTED.finditer(text):
            found.append((source, m.group(1).rstrip("."), REPO_ROOT))
        for m in PACKAGE.finditer(text):
            found.append((source, m.group(1).rstrip("."), PACKAGE_ROOT))
    return found


def test_named_paths_exist():
    found = _named_paths()
    assert len(found) > 100, len(found)  # the extraction itself works
    missing = [
        f"{source}: {path}"
        for source, path, root in found
        if not _excused(path) and not _exists(root, path)
    ]
    assert not missing, "named in the docs but not in the repository:\n" + "\n".join(
        sorted(set(missing))
    )
    used = {
        p
        for p in NOT_IN_REPO
        if any(_excused(path) and (path == p or path.startswith(p + "/")) for _, path, _ in found)
    }
    assert used == set(NOT_IN_REPO), (
        f"no longer named, remove from NOT_IN_REPO: {set(NOT_IN_REPO) - used}"
    )
    assert "posetrack_synthetic" in (PACKAGE_ROOT / "pavenet" / "data" / "synthetic.py").read_text()


def test_named_package_modules_exist_in_pavenet_or_detectron2():
    import detectron2

    roots = [PACKAGE_ROOT / "pavenet", Path(detectron2.__file__).parent]
    found = [(source, m.group(1)) for source, text in _doc_texts() for m in MODULE.finditer(text)]
    found = [
        (s, p)
        for s, p in found
        if not ROOTED.fullmatch(p) and not p.startswith("pavenet/") and "/" in p
    ]
    assert len(found) >= 5, found
    missing = [f"{s}: {p}" for s, p in found if not any((r / p).is_file() for r in roots)]
    assert not missing, "\n".join(missing)


def test_named_configs_load_with_the_project_loader():
    configs = sorted(
        {
            p
            for _, path, root in _named_paths()
            if path.endswith(".yaml")
            for pattern in _expand_braces(path)
            for p in glob.glob(str(root / pattern))
        }
    )
    assert len(configs) >= 5, configs
    for path in configs:
        load_pavenet_config(path)  # raises ConfigError naming the file


def test_named_python_modules_and_make_targets_exist():
    import sys

    sys.path.insert(0, str(PACKAGE_ROOT))
    texts = _doc_texts()
    modules = {m.group(1).rstrip(".") for _, text in texts for m in PYTHON_M.finditer(text)}
    assert "pavenet.evaluation.posetrack" in modules
    # Tools that `make mutate` installs from requirements-dev.txt are not in the test environment.
    dev_only = {
        re.split(r"[=<>\[ ]", line.strip())[0].lower()
        for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert "mutmut" in dev_only
    skip = {"pytest", *dev_only}
    missing = [m for m in sorted(modules) if m not in skip and importlib.util.find_spec(m) is None]
    assert not missing, missing
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = {m.group(1) for _, text in texts for m in MAKE.finditer(text)}
    assert "demo" in targets
    missing = [t for t in sorted(targets) if not re.search(rf"^{re.escape(t)}:", makefile, re.M)]
    assert not missing, missing


def test_relative_markdown_links_resolve():
    links = [
        (md, m.group(1))
        for md in _markdown_files()
        for m in MD_LINK.finditer(md.read_text())
        if "://" not in m.group(1) and not m.group(1).startswith("mailto:")
    ]
    assert len(links) >= 10, links
    broken = [
        f"{md.relative_to(REPO_ROOT)}: {target}"
        for md, target in links
        if not (md.parent / target).exists()
    ]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(
    "bad", ["configs/posetrack17/no_such.yaml", "docs/NOPE.md", "pavenet/nope.py"]
)
def test_the_extraction_catches_a_broken_path(bad):
    text = f"run `python tools/train_net.py --config-file {bad}` (see it)."
    paths = [m.group(1) for m in ROOTED.finditer(text)] + [
        m.group(1) for m in PACKAGE.finditer(text)
    ]
    assert bad in paths
    root = PACKAGE_ROOT if bad.startswith("pavenet/") else REPO_ROOT
    assert not _exists(root, bad) and _exists(REPO_ROOT, "tools/train_net.py")
