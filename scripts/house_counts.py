"""Counts for issue 20: `Any` in annotations, imports of the project's own modules inside functions,
and functions longer than 80 lines (each one named).

    python scripts/house_counts.py [pipeline [--by-file]]


An annotation counts once per `Any` name in it (parameters, returns, annotated assignments); a local
import counts once per `import`/`from` statement of `pipeline.*` inside a function body (imports under
`if TYPE_CHECKING:` at module level are not local).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path


def _any_in(node: ast.AST | None) -> int:
    if node is None:
        return 0
    count = 0
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):  # a quoted annotation
            count += _any_in(ast.parse(n.value, mode="eval"))
        elif (isinstance(n, ast.Name) and n.id == "Any") or (
            isinstance(n, ast.Attribute) and n.attr == "Any"
        ):
            count += 1
    return count


def _annotations(tree: ast.AST) -> list[ast.AST | None]:
    out: list[ast.AST | None] = []
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
            a = n.args
            out += [p.annotation for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            out += [a.vararg.annotation if a.vararg else None, a.kwarg.annotation if a.kwarg else None]
            out.append(n.returns)
        elif isinstance(n, ast.AnnAssign):
            out.append(n.annotation)
    return out


def _local_own_imports(tree: ast.AST) -> int:
    seen: set[int] = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for n in ast.walk(fn):
            if isinstance(n, ast.ImportFrom) and n.level == 0:
                names = [n.module or ""]
            elif isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            else:
                continue
            if any(name.split(".")[0] == "pipeline" for name in names):
                seen.add(id(n))
    return len(seen)


LONG = 80  # lines (of the def, its decorators not counted, to its last line)


def _long_functions(tree: ast.AST, path: Path) -> list[str]:
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno is not None:
            length = n.end_lineno - n.lineno + 1
            if length > LONG:
                out.append(f"{path}:{n.lineno} {n.name} ({length} lines)")
    return out


@dataclass
class Counts:
    files: int = 0
    anys: int = 0  # `Any` in annotations, all files
    local: int = 0  # local imports of pipeline.* inside functions
    long: list[str] = field(default_factory=list)  # "path:line name (n lines)" of each long function
    anys_by_file: dict[str, int] = field(default_factory=dict)  # files with at least one `Any`


def counts(root: str | Path = "pipeline") -> Counts:
    """The counts over every .py file below `root`."""
    out = Counts()
    for path in sorted(Path(root).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        anys = sum(_any_in(a) for a in _annotations(tree))
        out.files += 1
        out.anys += anys
        out.local += _local_own_imports(tree)
        out.long += _long_functions(tree, path)
        if anys:
            out.anys_by_file[str(path)] = anys
    return out


def main(root: str = "pipeline", *flags: str) -> None:
    c = counts(root)
    print(
        f"files {c.files}  Any-in-annotations {c.anys}  local-imports-of-pipeline {c.local}  "
        f"functions-over-{LONG}-lines {len(c.long)}"
    )
    for line in c.long:
        print(f"  {line}")
    if "--by-file" in flags:
        for path, n in sorted(c.anys_by_file.items(), key=lambda item: (-item[1], item[0])):
            print(f"  {n:4d} {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
