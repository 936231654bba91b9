"""Architecture rules that a test can hold: import direction and a cheap ``import cosim``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["models", "netlists", "cosim", "scripts"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_imports_flow_one_way():
    bad = []
    for rank, layer in enumerate(ORDER):
        for path in (ROOT / layer).rglob("*.py"):
            for mod in _imports(path):
                if mod in ORDER and ORDER.index(mod) > rank:
                    bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "imports must flow models -> netlists -> cosim -> scripts:\n" + "\n".join(bad)


def test_import_cosim_is_cheap():
    code = ("import sys, cosim, cosim.read.mvm, cosim.sim.engine, cosim.cli; "
            "heavy = [m for m in ('PySpice', 'matplotlib', 'networkx', 'sklearn') if m in sys.modules]; "
            "print(','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "", f"importing cosim loaded {res.stdout.strip()}"
