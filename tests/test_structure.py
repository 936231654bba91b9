"""The shape of the code: import direction and circles, deck provenance, sizes and docstrings.

The import graph is built with networkx from the source (every ``import`` of the project's own
packages, at module level or not) and checked both between the packages and rooms and between
modules. Deck provenance has two halves: here, every call that hands a deck to an engine is
found in the source and its deck traced to ``write_spice`` (or a bench's ``deck()``); at run
time, ``tests/conftest.py`` refuses any deck that is not a ``SpiceDeck`` in every test of the
suite.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "netlists", "cosim")
#: Rooms from the lowest up: a module may import its own room and the rooms ranked below it.
RANK = {"models": 0, "netlists": 1, "cosim.sim": 2, "cosim.read": 3, "cosim.write": 3, "cosim.characterize": 4,
        "cosim.calibrate": 5, "cosim.train": 6, "cosim.cli": 7, "cosim": 7}
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for top in PACKAGES:
        for p in sorted((ROOT / top).rglob("*.py")):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()
TREES = {name: ast.parse(p.read_text(), filename=str(p)) for name, p in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "cosim":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 1 else "cosim"


def _imports(tree: ast.AST):
    """(target module, imported names, inside a function) of every project import."""
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(n) for f in funcs for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] in PACKAGES:
            yield n.module, [a.name for a in n.names], id(n) in inner
        elif isinstance(n, ast.Import):
            for a in n.names:
                if a.name.split(".")[0] in PACKAGES:
                    yield a.name, [], id(n) in inner


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(MODULES)
    for name, tree in TREES.items():
        for target, names, _ in _imports(tree):
            for t in [f"{target}.{x}" for x in names if f"{target}.{x}" in MODULES] or [target]:
                g.add_edge(name, t)
    return g


def test_no_import_circles_between_modules_or_rooms():
    g = _graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, f"import circles between modules: {cycles}"
    rooms = nx.DiGraph((_room(a), _room(b)) for a, b in g.edges if _room(a) != _room(b))
    assert nx.is_directed_acyclic_graph(rooms), list(nx.simple_cycles(rooms))


def test_imports_flow_from_the_lower_rooms_to_the_higher():
    wrong = [(a, b) for a, b in _graph().edges
             if _room(a) != _room(b) and not RANK[_room(b)] < RANK[_room(a)]]
    assert not wrong, f"imports against the direction models -> netlists -> cosim.sim -> ... -> cosim.cli: {wrong}"


def test_no_private_names_across_modules_and_no_project_imports_in_functions():
    private = [(m, t, n) for m, tree in TREES.items() for t, names, _ in _imports(tree) for n in names
               if n.startswith("_")]
    assert not private, f"private names used across modules: {private}"
    inner = [(m, t) for m, tree in TREES.items() for t, _, in_function in _imports(tree) if in_function]
    assert not inner, f"project imports inside functions (only heavy optional dependencies belong there): {inner}"


def test_every_module_and_room_opens_with_a_docstring_without_history():
    missing = [m for m, tree in TREES.items() if not ast.get_docstring(tree)]
    assert not missing, f"modules without a docstring: {missing}"
    history = re.compile(r"\bMeasured\b|\b[Tt]his session\b|\b[Ii]ssue \d|\buntil .* lands\b|PHYSICS\.md|NGSPICE\.md")
    bad = [m for m, tree in TREES.items() if history.search(ast.get_docstring(tree) or "")]
    assert not bad, f"module docstrings with history, benchmark numbers or notes outside the repository: {bad}"


def test_files_and_functions_stay_small():
    long_files = [(m, n) for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long_files, f"files over {MAX_FILE_LINES} lines: {long_files}"
    long_funcs = []
    for path in [*MODULES.values(), *sorted((ROOT / "scripts").glob("*.py"))]:
        text = path.read_text()
        for f in ast.walk(ast.parse(text)):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = f.end_lineno - f.lineno + 1
                body = "\n".join(text.splitlines()[f.lineno - 1:f.end_lineno])
                if n > MAX_FUNCTION_LINES and "# long because" not in body:
                    long_funcs.append((str(path.relative_to(ROOT)), f.name, n))
    assert not long_funcs, f"functions over {MAX_FUNCTION_LINES} lines without a '# long because' comment: {long_funcs}"


# ----------------------------------------------------------------------------------------------
# Deck provenance

ENGINE_CALLS = {"run", "run_many", "load", "rerun"}
#: Calls that return a deck of write_spice (or a list of them).
DECK_MAKERS = {"write_spice", "deck", "_deck", "read_bench"}


def _maker(call: ast.AST) -> bool:
    if isinstance(call, ast.Call):
        f = call.func
        return (isinstance(f, ast.Name) and f.id in DECK_MAKERS) or (isinstance(f, ast.Attribute) and f.attr in DECK_MAKERS)
    return False


def _traced(expr: ast.AST, func: ast.AST, seen=frozenset()) -> bool:
    """Whether ``expr`` evaluates to decks made by write_spice, following the assignments of
    names in the enclosing function."""
    if _maker(expr):
        return True
    if isinstance(expr, (ast.ListComp, ast.GeneratorExp)):
        return _traced(expr.elt, func, seen)
    if isinstance(expr, ast.Subscript):
        return _traced(expr.value, func, seen)
    if isinstance(expr, ast.Name) and expr.id not in seen:
        sources = []
        for n in ast.walk(func):
            if isinstance(n, ast.Assign):
                names = [t for tgt in n.targets for t in ast.walk(tgt) if isinstance(t, ast.Name)]
                if any(t.id == expr.id for t in names):
                    sources.append(n.value)
            elif isinstance(n, (ast.For, ast.comprehension)):
                if any(isinstance(t, ast.Name) and t.id == expr.id for t in ast.walk(n.target)):
                    sources.append(n.iter)
            elif isinstance(n, ast.arguments) and n is func.args and any(a.arg == expr.id for a in n.args):
                return False
        return bool(sources) and all(_traced(s, func, seen | {expr.id}) for s in sources)
    return False


def _engine_calls():
    for name, tree in TREES.items():
        if name.startswith("cosim.sim"):
            continue       # the engines themselves
        for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for call in ast.walk(func):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr in ENGINE_CALLS and "ngine" in ast.unparse(call.func.value) and call.args):
                    yield name, func, call


def test_every_deck_handed_to_an_engine_comes_from_write_spice():
    calls = list(_engine_calls())
    assert len(calls) >= 10, "the scan lost the engine calls"
    bad = [f"{m}:{c.lineno} {ast.unparse(c)[:90]}" for m, f, c in calls if not _traced(c.args[0], f)]
    assert not bad, "decks that do not trace to netlists.spice.write_spice:\n" + "\n".join(bad)


def test_no_deck_text_outside_the_writer():
    """Analysis and end lines are the writer's: nowhere else may a string hold them (device
    models hold subcircuit text, which is theirs)."""
    directive = re.compile(r"(^|\n)\s*\.(tran|op|dc|ac|end|ic|options|save)\b", re.I)
    bad = []
    for name, tree in TREES.items():
        if name == "netlists.spice" or name.startswith("cosim.sim"):   # the writer; the engines read decks
            continue
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for n in ast.walk(tree):
            text = None
            if isinstance(n, ast.JoinedStr):   # f-strings: their formatted parts as placeholders
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in n.values)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs | parts:
                text = n.value
            if text is not None and directive.search(text):
                bad.append(f"{name}:{n.lineno} {text[:60]!r}")
    assert not bad, "deck text written by hand:\n" + "\n".join(bad)


def test_importing_the_library_is_cheap():
    """Importing every module loads neither PySpice, matplotlib, Dask, scikit-learn nor numba: they load
    when a call needs them."""
    import subprocess
    import sys
    code = (f"import sys; import {', '.join(sorted(MODULES))}; heavy = [m for m in ('PySpice', 'matplotlib', "
            "'dask', 'distributed', 'sklearn', 'numba') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the library loads {out.stdout.strip()}"
