"""The README never lies: its Python and command-line examples run here."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_readme_opens_with_the_two_commands():
    first = blocks("bash")[0].strip().splitlines()
    assert len(first) == 2
    assert first[0].startswith("bash scripts/setup.sh")
    assert "pytest" in first[1]
    assert README.index("```bash") < README.index("## What it does")


def test_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for code in blocks("python"):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def test_cli_examples_run(tmp_path, rng):
    np.save(tmp_path / "G.npy", rng.uniform(1e-6, 25e-6, (16, 8)))
    np.save(tmp_path / "V.npy", rng.uniform(0, 0.2, (4, 16)))
    np.save(tmp_path / "Vt.npy", rng.uniform(0, 0.2, (4, 8)))
    np.save(tmp_path / "codes.npy", rng.integers(-255, 256, (4, 16)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tour = blocks("bash")[1]
    ran = 0
    for line in tour.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        argv = shlex.split(line)
        if argv[0] == "xbar":
            argv = [sys.executable, "-m", "cosim.cli"] + argv[1:]
        res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{line}\n{res.stdout}\n{res.stderr}"
        ran += 1
    assert ran >= 8
