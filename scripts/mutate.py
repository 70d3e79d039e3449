"""`make mutate`: mutation testing of the modules that carry the project's claims (docs/TESTING.md).

For each module of the [pavenet.mutate] section of setup.cfg (path = its fast tests), mutmut 2 makes one
small change at a time (an operator, a constant, a comparison), runs those tests, and counts the change as
killed when a test fails. It runs on a copy of the tree under build/mutate (mutmut 2 edits files in place),
with a fresh result cache per module; survivors' diffs go to build/mutate/report/<module>.txt.

    python scripts/mutate.py                 # every module of setup.cfg
    python scripts/mutate.py ap tracker      # modules whose file name (without .py) is given
    python scripts/mutate.py --list
"""
import argparse
import configparser
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "pavenet.mutate"
STATUSES = ("killed", "survived", "timeout", "suspicious", "skipped", "untested")


def read_targets(config: Path):
    """{module path: [test args]} in file order, from the [pavenet.mutate] section of `config`."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep the paths' case
    parser.read(config)
    if not parser.has_section(SECTION):
        raise SystemExit(f"{config}: no [{SECTION}] section (module path = test files)")
    targets = {}
    for module, tests in parser.items(SECTION):
        if not (ROOT / module).is_file():
            raise SystemExit(f"{config} [{SECTION}]: module {module} not found (moved? update the path)")
        args = tests.split()
        missing = [t for t in args if not (ROOT / t.split("::")[0]).is_file()]
        if not args or missing:
            raise SystemExit(f"{config} [{SECTION}] {module}: test files {missing or '(none)'} not found")
        targets[module] = args
    return targets


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and new files, without ignored ones) -> `dest`."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def mutmut(work: Path, env, *args, check=False) -> str:
    proc = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=work, env=env, capture_output=True,
                          text=True)
    if check and proc.returncode not in (0, 2, 4, 6, 8, 10, 12, 14):
        raise SystemExit(f"mutmut {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run_module(module: str, tests, work: Path, env, report_dir: Path) -> dict:
    (work / ".mutmut-cache").unlink(missing_ok=True)
    runner = f"{shlex.quote(sys.executable)} -m pytest -x -q -p no:cacheprovider {' '.join(tests)}"
    start = time.time()
    mutmut(work, env, "run", "--paths-to-mutate", module, "--runner", runner, "--tests-dir", "tests/",
           "--no-progress", "--simple-output", "-m", "4", check=True)
    counts = {s: len(mutmut(work, env, "result-ids", s).split()) for s in STATUSES}
    counts["minutes"] = (time.time() - start) / 60
    name = Path(module).stem
    with open(report_dir / f"{name}.txt", "w") as f:
        f.write(f"{module}: {counts}\nrunner: {runner}\n\n")
        for status in ("survived", "timeout", "suspicious"):
            for mid in mutmut(work, env, "result-ids", status).split():
                f.write(f"--- {status} mutant {mid}\n{mutmut(work, env, 'show', mid)}\n")
    shutil.copy2(work / ".mutmut-cache", report_dir / f"{name}.mutmut-cache")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="*", help="module file names without .py (default: all in setup.cfg)")
    ap.add_argument("--list", action="store_true", help="print the modules and their tests, then exit")
    ap.add_argument("--work", default=str(ROOT / "build" / "mutate"), help="where the copy is made")
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
            raise SystemExit(f"unknown modules {unknown}; setup.cfg [{SECTION}] has {sorted(known)}")
        targets = {known[m]: targets[known[m]] for m in args.modules}
    try:
        import mutmut as _  # noqa: F401
    except ImportError:
        raise SystemExit("mutmut is not installed: pip install -r requirements-dev.txt") from None
    work = Path(args.work)
    copy_tree(work)
    report_dir = work / "report"
    report_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(work / "projects" / "PAVENet"))
    # The tests find the shared data beside the repository: point the copy at the original's.
    env.setdefault("PAVENET_SHARED_DIR", str(ROOT.parent / "shared"))
    rows = []
    for module, tests in targets.items():
        c = run_module(module, tests, work, env, report_dir)
        total = sum(c[s] for s in STATUSES)
        score = 100.0 * c["killed"] / max(total - c["skipped"], 1)
        rows.append((module, total, c["killed"], c["survived"], c["timeout"] + c["suspicious"], score, c["minutes"]))
        print(f"{module}: {c['killed']}/{total} killed, {c['survived']} survived, {c['timeout']} timeout, "
              f"{c['suspicious']} suspicious ({score:.1f}%, {c['minutes']:.1f} min)", flush=True)
    print("\n| module | mutants | killed | survived | timeout/suspicious | score | minutes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.1f}% | {r[6]:.1f} |")
    print(f"\nsurvivors' diffs: {report_dir}/<module>.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
