"""Code shape the developers' guide asks for: no function in src/ over LIMIT lines without a stated reason."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from tests.conftest import ROOT

LIMIT = 60  # lines from `def` to the end of the body, nested functions included
REASON = "# long:"  # a comment line right above the def (or its decorators) saying why it stays long


def long_functions() -> Iterator[str]:
    for path in sorted((ROOT / "src").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if length > LIMIT and not lines[first - 2].strip().startswith(REASON):
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}() is {length} lines"


def test_no_function_over_the_limit_without_a_reason() -> None:
    found = list(long_functions())
    assert not found, f"split these or say why above them ({REASON} ...): {found}"
