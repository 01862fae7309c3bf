"""The share of code lines in spec files that are declarations (lines inside a top-level statement
calling something named ``*declare*``), per file and in total; comments and blank lines excluded.

    python benchmarks/declaration_ratio.py [FILE ...]     # default: conformance/specs/**/*.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def ratio(path: Path) -> tuple[int, int]:
    """(declaration lines, code lines) of one file."""
    src = path.read_text(encoding="utf-8")
    code = {i + 1 for i, line in enumerate(src.splitlines()) if line.strip() and not line.strip().startswith("#")}
    declared: set[int] = set()
    for statement in ast.parse(src).body:
        if any(isinstance(node, ast.Call)
               and "declare" in (getattr(node.func, "id", "") or getattr(node.func, "attr", ""))
               for node in ast.walk(statement)):
            declared |= code & set(range(statement.lineno, statement.end_lineno + 1))
    return len(declared), len(code)


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    paths = [Path(a) for a in argv] or sorted((root / "conformance" / "specs").rglob("*.py"))
    total_decl = total = 0
    for path in paths:
        decl, code = ratio(path)
        total_decl, total = total_decl + decl, total + code
        print(f"{path.name:32} {decl:5} / {code:5}  {100 * decl // max(code, 1):3} %")
    print(f"{'total':32} {total_decl:5} / {total:5}  {100 * total_decl // max(total, 1):3} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
