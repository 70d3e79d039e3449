"""`make mutate`: mutation testing of the modules that carry the project's claims (docs/TESTING.md).

mutmut makes one small change at a time in a module (an operator, a constant, a comparison, a dropped
argument) and runs the tests that call the changed function; a change no test notices "survives". The
modules and their fast tests are listed once, in the [pavenet.mutate] section of setup.cfg.

mutmut 3 names a mutant after its file's path and must find it under the same dotted name at run time,
so it cannot run in this repository's layout (`projects/PAVENet/pavenet`, imported as `pavenet`). This
script stages a copy with the package at the top (build/mutate/pavenet, build/mutate/tests), writes the
mutmut settings there, runs `mutmut run` in it (the test process imports once and forks per mutant), and
prints the score per module. Survivors: `cd build/mutate && python -m mutmut show <name>`.

    python scripts/mutate.py                 # every module of setup.cfg
    python scripts/mutate.py ap tracker      # modules by file name (without .py)
    python scripts/mutate.py --rev HEAD      # the last commit instead of the working tree
    python scripts/mutate.py --list
"""

import argparse
import configparser
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path("projects/PAVENet/pavenet")
SECTION = "pavenet.mutate"
MUTMUT = [sys.executable, "-m", "mutmut"]


def read_targets(config: Path):
    """{module path: [test args]} in file order, from the [pavenet.mutate] section of `config`."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep the paths' case
    parser.read(config)
    if not parser.has_section(SECTION):
        raise SystemExit(f"{config}: no [{SECTION}] section (module path = test files)")
    targets = {}
    for module, tests in parser.items(SECTION):
        if not (ROOT / module).is_file() or not Path(module).is_relative_to(PACKAGE):
            raise SystemExit(
                f"{config} [{SECTION}]: module {module} not found under {PACKAGE} (moved? update it)"
            )
        args = tests.split()
        missing = [t for t in args if not (ROOT / t.split("::")[0]).is_file()]
        if not args or missing:
            raise SystemExit(
                f"{config} [{SECTION}] {module}: test files {missing or '(none)'} not found"
            )
        targets[module] = args
    return targets


def stage(work: Path, targets, rev=None) -> None:
    """build/mutate: the package as `pavenet/`, the tests (from the working tree, or from git revision `rev`),
    and mutmut's settings for `targets`."""
    if work.exists():
        shutil.rmtree(work)
    if rev:
        work.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", rev, str(PACKAGE), "tests"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
        (work / PACKAGE).rename(work / "pavenet")
        shutil.rmtree(work / PACKAGE.parts[0])
    else:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / PACKAGE, work / "pavenet", ignore=ignore)
        shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    tests = list(dict.fromkeys(t for args in targets.values() for t in args))
    lines = ["[mutmut]", "source_paths = pavenet", "only_mutate ="]
    lines += [f"    pavenet/{Path(m).relative_to(PACKAGE)}" for m in targets]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in tests]
    lines += [
        "pytest_add_cli_args =",
        "    -p",
        "    no:cacheprovider",
        # torch's thread pools are not fork-safe: fork the mutants from a clean server process
        "process_isolation = forkserver",
    ]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")


def module_of(mutant: str) -> str:
    """pavenet.evaluation.ap.x_voc_ap__mutmut_12 or pavenet.inference.tracker.xǁPoseTrackerǁupdate__mutmut_3
    -> the module's dotted name."""
    return re.split(r"\.x(?:_|ǁ)", mutant, maxsplit=1)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "modules", nargs="*", help="module file names without .py (default: all in setup.cfg)"
    )
    ap.add_argument(
        "--list", action="store_true", help="print the modules and their tests, then exit"
    )
    ap.add_argument(
        "--work", default=str(ROOT / "build" / "mutate"), help="where the copy is staged"
    )
    ap.add_argument("--rev", help="stage this git revision (e.g. HEAD) instead of the working tree")
    args = ap.parse_args(argv)
    targets = read_targets(ROOT / "setup.cfg")
    if args.list:
        for module, tests in targets.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    if args.modules:
        known = {Path(m).stem: m for m in targets}
        unknown = [m for m in args.modules if m not in known]
        if unknown:
            raise SystemExit(
                f"unknown modules {unknown}; setup.cfg [{SECTION}] has {sorted(known)}"
            )
        targets = {known[m]: targets[known[m]] for m in args.modules}
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise SystemExit("mutmut is not installed: pip install -r requirements-dev.txt") from None
    work = Path(args.work)
    stage(work, targets, args.rev)
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH"
    }  # only the staged package may be found
    # The tests find the shared data beside the repository: point the staged copy at the original's.
    env.setdefault("PAVENET_SHARED_DIR", str(ROOT.parent / "shared"))
    subprocess.run(MUTMUT + ["run"], cwd=work, env=env, check=True)
    out = subprocess.run(
        MUTMUT + ["results", "--all", "true"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts = {}
    for name, status in re.findall(r"^\s*(\S+): (.+)$", out, re.M):
        counts.setdefault(module_of(name), Counter())[status.strip()] += 1
    print("\n| module | mutants | killed | survived | other | score |\n|---|---|---|---|---|---|")
    for module in sorted(counts):
        c = counts[module]
        total = sum(c.values())
        other = total - c["killed"] - c["survived"]
        print(
            f"| {module} | {total} | {c['killed']} | {c['survived']} | {other} | "
            f"{100.0 * c['killed'] / max(total, 1):.1f}% |"
        )
    print(
        f"\nsurvivors: cd {work} && {sys.executable} -m mutmut show <name>  (names: mutmut results)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
