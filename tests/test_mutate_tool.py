"""``tools/mutate.py --since``: the mutants of the functions a change touched, by mutmut's
names. A wrong mapping would leave a changed function's mutants unrun and report the
change as defended, so it is checked here against a real git history."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "mutate.py"

BEFORE = """\
import os

LIMIT = 3


def alpha(x):
    return x + 1


def alphabet(x):
    return x * 2


@staticmethod
def decorated():
    return 1


class Gate:
    def open(self):
        first = 1
        second = 2
        return first + second

    async def close(self):
        return None


def untouched():
    return 0
"""


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_tool", TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutate_tool"] = module  # dataclasses and annotations look it up
    spec.loader.exec_module(module)
    return module


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path]:
    if shutil.which("git") is None:
        pytest.fail("git is needed: the tool reads changes from git")
    tool = _tool()
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    source = tmp_path / "src" / "pkg" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text(BEFORE)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "before")
    return tool, source


def _changed(tool: ModuleType, source: Path, after: str) -> set[str]:
    source.write_text(after)
    return set(tool.changed_functions("src/pkg/mod.py", "HEAD"))


def test_a_changed_line_names_its_function_and_no_other(repo: tuple[ModuleType, Path]) -> None:
    tool, source = repo
    assert _changed(tool, source, BEFORE.replace("x + 1", "x + 2")) == {"x_alpha"}


def test_a_method_is_named_with_its_class_as_mutmut_names_it(
    repo: tuple[ModuleType, Path],
) -> None:
    tool, source = repo
    after = BEFORE.replace("second = 2", "second = 3").replace("return None", "return 1")
    assert _changed(tool, source, after) == {"xǁGateǁopen", "xǁGateǁclose"}


def test_a_deleted_line_names_the_function_it_was_in(repo: tuple[ModuleType, Path]) -> None:
    tool, source = repo
    after = BEFORE.replace("        second = 2\n", "").replace("first + second", "first")
    assert _changed(tool, source, after) == {"xǁGateǁopen"}
    source.write_text(BEFORE)
    # Only a deletion, of the method's middle line: both neighbours are its own.
    assert _changed(tool, source, BEFORE.replace("        first = 1\n", "")) == {"xǁGateǁopen"}


def test_a_decorator_belongs_to_its_function(repo: tuple[ModuleType, Path]) -> None:
    tool, source = repo
    after = BEFORE.replace("@staticmethod", "@classmethod")
    assert _changed(tool, source, after) == {"x_decorated"}


def test_a_change_outside_functions_names_none(repo: tuple[ModuleType, Path]) -> None:
    tool, source = repo
    after = BEFORE.replace("LIMIT = 3", "LIMIT = 4").replace("import os", "import re")
    assert _changed(tool, source, after) == set()
    assert _changed(tool, source, BEFORE) == set()


def test_lines_moved_down_by_an_addition_are_not_changes(repo: tuple[ModuleType, Path]) -> None:
    """Lines are the new file's: a function pushed down by added lines above is not named
    for lines it merely moved to."""
    tool, source = repo
    after = BEFORE.replace("LIMIT = 3\n", "LIMIT = 3\nA = 1\nB = 2\nC = 3\nD = 4\n")
    assert _changed(tool, source, after) == set()
    after = after.replace("return 0", "return -1")
    assert _changed(tool, source, after) == {"x_untouched"}


def test_an_unknown_revision_is_refused_by_name(repo: tuple[ModuleType, Path]) -> None:
    tool, _ = repo
    with pytest.raises(SystemExit, match="git diff no-such-rev failed"):
        tool.changed_functions("src/pkg/mod.py", "no-such-rev")


def test_mutants_are_picked_by_whole_function_name() -> None:
    tool = _tool()
    names = [
        "pkg.mod.x_alpha__mutmut_1",
        "pkg.mod.x_alpha__mutmut_12",
        "pkg.mod.x_alphabet__mutmut_1",
        "pkg.mod.xǁGateǁopen__mutmut_3",
        "pkg.mod.xǁGateǁclose__mutmut_1",
    ]
    assert tool.of_functions(names, {"x_alpha", "xǁGateǁopen"}) == [
        "pkg.mod.x_alpha__mutmut_1",
        "pkg.mod.x_alpha__mutmut_12",
        "pkg.mod.xǁGateǁopen__mutmut_3",
    ]
    assert tool.of_functions(names, set()) == []
