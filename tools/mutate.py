"""Mutation testing of fetchmany's core modules with mutmut 3, one module or a few at a time.

    pip install -e '.[test,mutation]'
    python tools/mutate.py redaction.py records.py     # or fetch/limits.py, output/, ...
    python tools/mutate.py --report redaction.py       # the last run's scores, no run

Each mutant (a small change to the code: ``<`` for ``<=``, a constant, a dropped call)
is run against the tests that reach the function it changes; one no test fails on is a
guarantee no test defends. Not for CI: the suite runs once per mutant, hours for every
core module on two cores. Modules are given as paths under ``src/fetchmany`` (a folder
takes every module in it) among those ``[tool.mutmut] only_mutate`` in pyproject.toml
names; none means all of them.

It runs ``mutmut run`` at the lowest priority (``nice -n 19``), then prints each
module's mutation score and its surviving mutants (``mutmut show NAME`` shows one as a
diff). docs/testing.md says how to read them, and what a subprocess test cannot kill.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path("src/fetchmany")
MUTANTS = ROOT / "mutants"

KILLED: dict[int | None, str] = {
    1: "killed",
    3: "killed",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
}
"""mutmut's exit codes (mutmut/stats.py) of a mutant the tests caught: a test failed,
or the tests ran past their time (an endless loop is caught too)."""
TIMED_OUT = 36
CLASS_SEPARATOR = "ǁ"
"""Between a class and its method in mutmut's names (``xǁClassǁmethod``): its
``CLASS_NAME_SEPARATOR``, U+01C1, a letter so that the name is an identifier."""
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests", None: "not checked"}


def core_modules() -> list[str]:
    """The modules mutmut is configured to mutate, as paths from the repository's root."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    patterns: list[str] = config["only_mutate"]
    found = sorted(str(path.relative_to(ROOT)) for path in (ROOT / PACKAGE).rglob("*.py"))
    return [path for path in found if any(fnmatch.fnmatch(path, p) for p in patterns)]


def chosen(names: list[str]) -> list[str]:
    """The core modules that ``names`` (paths under src/fetchmany) pick; exits on a name
    that picks none."""
    modules = core_modules()
    if not names:
        return modules
    picked: list[str] = []
    for name in names:
        path = str(PACKAGE / name.strip("/"))
        matches = [m for m in modules if m == path or m.startswith(path + "/")]
        if not matches:
            sys.exit(
                f"mutate: {name} is not a core module under {PACKAGE}; choose from: "
                + ", ".join(str(Path(m).relative_to(PACKAGE)) for m in modules)
            )
        picked += [m for m in matches if m not in picked]
    return picked


def mutant_glob(module: str) -> str:
    """mutmut's names for a module's mutants: ``fetchmany.fetch.limits.*``."""
    dotted = module.removeprefix("src/").removesuffix(".py").replace("/", ".")
    return f"{dotted.removesuffix('.__init__')}.*"


def run(modules: list[str], children: int, names: list[str] | None = None) -> int:
    """``mutmut run`` on ``modules``' mutants: all of them again when named; with every
    core module, none named, so that a run stopped half-way goes on where it stopped.
    ``names``: exactly these mutants instead (those a first pass left, or mutmut's
    patterns for a function's: ``fetchmany.output.merge.x__typed__mutmut_*``)."""
    if names is None:
        names = [] if modules == core_modules() else [mutant_glob(m) for m in modules]
    command = ["nice", "-n", "19", "mutmut", "run", "--max-children", str(children), *names]
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def make_mutants() -> None:
    """mutmut's own first step, alone: the source and tests copied into ``mutants/``, and
    the mutants of every changed core module made (results of unchanged ones kept). A
    ``mutmut run`` would go on to run the whole suite for its map of tests."""
    code = (
        "from mutmut.__main__ import copy_also_copy_files, copy_src_dir, create_mutants\n"
        "from mutmut.mutation.trampoline import set_mutant_under_test\n"
        "set_mutant_under_test('mutant_generation')\n"
        "copy_src_dir(); copy_also_copy_files(); create_mutants(2)\n"
    )
    MUTANTS.mkdir(exist_ok=True)
    if subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode != 0:
        sys.exit("mutate: mutmut could not make the mutants (see above); run without --first")


def unjudged(module: str) -> list[str]:
    """The mutants of ``module`` with no result yet."""
    meta = MUTANTS / f"{module}.meta"
    results: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return [name for name, code in results.items() if code is None]


def changed_lines(module: str, since: str) -> set[int]:
    """The lines of ``module`` as it is now that differ from git revision ``since`` (for a
    deletion, the lines either side of it)."""
    diff = subprocess.run(
        ["git", "diff", "--unified=0", since, "--", module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if diff.returncode != 0:
        sys.exit(f"mutate: git diff {since} failed: {diff.stderr.strip()}")
    lines: set[int] = set()
    for match in re.finditer(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", diff.stdout, re.MULTILINE):
        start, count = int(match[1]), int(match[2] or "1")
        lines.update(range(start, start + count) if count else (start, start + 1))
    return lines


def changed_functions(module: str, since: str) -> set[str]:
    """The functions and methods of ``module`` with a line changed since git revision
    ``since``, by mutmut's names for them (``x_name``, ``xǁClassǁname``), the names its
    mutants begin with. A change outside every function (a constant, an import) names
    none: give the module without ``--since`` to run it whole."""
    lines = changed_lines(module, since)
    tree = ast.parse((ROOT / module).read_text())
    found: set[str] = set()

    def touched(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        return any(first <= line <= (node.end_lineno or node.lineno) for line in lines)

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and touched(node):
            found.add(f"x_{node.name}")
        elif isinstance(node, ast.ClassDef):
            for method in node.body:
                if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef) and touched(method):
                    found.add(f"x{CLASS_SEPARATOR}{node.name}{CLASS_SEPARATOR}{method.name}")
    return found


def of_functions(names: list[str], functions: set[str]) -> list[str]:
    """The mutants among ``names`` (``fetchmany.module.FUNCTION__mutmut_N``) of
    ``functions``."""
    return [n for n in names if n.rsplit("__mutmut_", 1)[0].rpartition(".")[2] in functions]


def record_caught(module: str, caught: list[str], code: int = 1) -> None:
    """Write ``caught`` into mutmut's results for ``module`` with mutmut's exit ``code`` (1:
    a test failed; 36: a timeout), read afresh so that nothing else in the file is lost."""
    meta = MUTANTS / f"{module}.meta"
    data = json.loads(meta.read_text())
    for name in caught:
        data["exit_code_by_key"][name] = code
    temp = meta.with_suffix(".meta.tmp")
    temp.write_text(json.dumps(data, indent=4))
    temp.replace(meta)


def pytest_against(name: str, tests: list[str], limit: float | None = None) -> int:
    """pytest's exit status for ``tests`` with mutant ``name`` in place ("" for none), or
    mutmut's 36 (a timeout, which mutmut counts as caught) past ``limit`` seconds: a
    mutant can hang a run where pytest-timeout cannot interrupt it. The mutant is chosen
    per call by MUTANT_UNDER_TEST, which a subprocess the tests start inherits: the
    installed command run by a test runs the mutant too."""
    env = {**os.environ, "MUTANT_UNDER_TEST": name, "PYTHONPATH": str(MUTANTS / "src")}
    command = ["nice", "-n", "19", sys.executable, "-m", "pytest", "-x", "-q"]
    # One seed for every run: a property test sees the examples the clean run passed,
    # not new ones that may fail it with no mutant in place (a false catch).
    command += ["-p", "no:cacheprovider", "--timeout=60", "--hypothesis-seed=0", *tests]
    with subprocess.Popen(
        command,
        cwd=MUTANTS,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group, so that a hang is ended whole
    ) as run:
        try:
            return run.wait(limit)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            return TIMED_OUT


def first_pass(
    modules: list[str],
    tests: list[str],
    children: int,
    functions: dict[str, set[str]] | None = None,
) -> list[str]:
    """Each mutant of ``modules`` not yet judged, against ``tests`` alone (the module's own
    test files, seconds a mutant where mutmut's map of every test that reaches a function
    can take minutes); with ``functions``, only the mutants of those of each module's
    functions (``changed_functions``). Those a test fails on are recorded as caught; the
    names of the rest are returned, for mutmut to run against every test that reaches
    them. A pass proves nothing of a survivor, so none is recorded as one here."""
    began = time.monotonic()
    if (status := pytest_against("", tests)) != 0:
        sys.exit(f"mutate: {' '.join(tests)} fail (exit {status}) with no mutant in place")
    limit = max(120.0, 5 * (time.monotonic() - began))
    left: list[str] = []
    for module in modules:
        names = unjudged(module)
        if functions is not None:
            names = of_functions(names, functions[module])
        caught = 0
        with ThreadPoolExecutor(children) as pool:
            statuses = pool.map(lambda n: pytest_against(n, tests, limit), names)
            for count, (name, status) in enumerate(zip(names, statuses, strict=True), 1):
                if status in (1, TIMED_OUT):
                    record_caught(module, [name], status)  # a stopped pass keeps them
                    caught += 1
                else:
                    left.append(name)
                print(f"\r{module}: {count}/{len(names)}, {caught} caught", end="")
        print()
    return left


def report(modules: list[str], functions: dict[str, set[str]] | None = None) -> bool:
    """Each module's score and survivors, from mutmut's results (with ``functions``, of
    those functions' mutants alone); False if there are none."""
    any_results = False
    for module in modules:
        meta = MUTANTS / f"{module}.meta"
        if not meta.exists():
            print(f"{module}: not run yet")
            continue
        any_results = True
        results: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        if functions is not None:
            results = {n: results[n] for n in of_functions(list(results), functions[module])}
            print(f"{module}, changed: {', '.join(sorted(functions[module])) or 'none'}")
        outcome = Counter(
            KILLED.get(code) or SURVIVED.get(code) or "suspicious" for code in results.values()
        )
        caught = outcome["killed"] + outcome["timeout"]
        judged = len(results) - outcome["not checked"]
        score = f"{100 * caught / judged:.1f}%" if judged else "-"
        print(
            f"{module}: {score} ({caught} of {judged} mutants caught; "
            + ", ".join(f"{count} {what}" for what, count in sorted(outcome.items()))
            + ")"
        )
        for name, code in sorted(results.items()):
            if code not in KILLED and code is not None:  # not checked: counted above
                print(f"    {SURVIVED.get(code, 'suspicious')}: {name}")
    return any_results


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # | head ends the report quietly
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="paths under src/fetchmany (default: all)")
    parser.add_argument("--report", action="store_true", help="only print the last results")
    parser.add_argument("--children", type=int, default=1, help="mutants run at once (1)")
    parser.add_argument(
        "--first",
        action="append",
        metavar="TEST_FILE",
        help="run the mutants not yet judged against this test file first (repeat for more);"
        " mutmut then runs those it does not catch",
    )
    parser.add_argument(
        "--since",
        metavar="REV",
        help="only the mutants of functions changed since this git revision (main, HEAD~3)",
    )
    args = parser.parse_args()
    modules = chosen(args.modules)
    functions = None
    if args.since is not None:
        functions = {module: changed_functions(module, args.since) for module in modules}
    if args.report:
        status = 0
    elif args.first:
        make_mutants()
        left = first_pass(modules, args.first, args.children, functions)
        status = run(modules, args.children, left) if left else 0
    elif functions is not None:
        patterns = [
            f"{mutant_glob(module).removesuffix('*')}{function}__mutmut_*"
            for module in modules
            for function in sorted(functions[module])
        ]
        status = run(modules, args.children, patterns) if patterns else 0
    else:
        status = run(modules, args.children)
    if not report(modules, functions) or status != 0:
        sys.exit(status or 1)


if __name__ == "__main__":
    main()
