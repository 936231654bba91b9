"""What a user can rely on, tried as a hostile user would: the ``xbar`` command line run as a
subprocess on bad input, failing writes, two runs on one folder, and kills.

Every bad input gives exit 2 and one line that names the file, option or field; a write that
fails leaves the earlier file byte-identical; a run folder holds one run; no ngspice outlives
the run that started it; SIGINT and SIGTERM stop a run within about a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cosim.sim.files import RunFolderBusy, RunLock

ROOT = Path(__file__).resolve().parent.parent
XBAR = [sys.executable, "-m", "cosim.cli"]


def _env(cache: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    return env


def xbar(*args, cwd: Path, cache: Path | None = None, fsize_kb: int | None = None) -> subprocess.CompletedProcess:
    """``xbar args`` in ``cwd``; with ``fsize_kb``, under ``ulimit -f`` (a disk that is full
    past that many KiB per file)."""
    argv = XBAR + [str(a) for a in args]
    if fsize_kb is not None:
        argv = ["bash", "-c", f'ulimit -f {fsize_kb}; exec "$@"', "xbar"] + argv
    return subprocess.run(argv, cwd=cwd, env=_env(cache), capture_output=True, text=True, timeout=600,
                          check=False)


def start(*args, cwd: Path, cache: Path) -> subprocess.Popen:
    """``xbar args`` in the background (with faulthandler: a hung run dumps its threads on SIGABRT)."""
    return subprocess.Popen([sys.executable, "-X", "faulthandler", *XBAR[1:], *map(str, args)], cwd=cwd,
                            env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    """The exit status of ``proc``; past ``timeout`` its threads' stacks in the failure."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate()
        raise AssertionError(f"still running after {timeout} s; its threads:\n{err}") from None


# ----------------------------------------------------------------------------------------------
# Processes, from /proc


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(command, state, parent PID) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return comm, state, int(ppid)


def ngspice_children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st is not None and st[0] == "ngspice" and st[2] == pid:
                out.append(int(d.name))
    return out


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] != "Z"


def wait_for(predicate, timeout: float, what: str):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def scratch_folders(cache: Path) -> list[Path]:
    root = cache / "xbar-cosim" / "tmp"
    return sorted(root.iterdir()) if root.is_dir() else []


# ----------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the problem


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(7)
    np.save(tmp_path / "G.npy", rng.uniform(1e-6, 25e-6, (16, 8)))
    np.save(tmp_path / "V.npy", rng.uniform(0, 0.2, (3, 16)))
    np.save(tmp_path / "codes.npy", rng.integers(-100, 100, (3, 16)))
    return tmp_path


def _digits_npz(path: Path, **override) -> None:
    rng = np.random.default_rng(1)
    arrays = {"X_train": rng.uniform(0, 1, (30, 64)), "y_train": np.arange(30) % 3,
              "X_test": rng.uniform(0, 1, (9, 64)), "y_test": np.arange(9) % 3}
    arrays.update(override)
    np.savez(path, **arrays)


def _truncated_npz(path: Path) -> None:
    _digits_npz(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _object_npz(path: Path) -> None:
    x = np.empty(30, dtype=object)
    x[:] = [[0.5] * 64] * 30
    with zipfile.ZipFile(path, "w") as z:
        for k, v in (("X_train", x), ("y_train", np.arange(30) % 3), ("X_test", np.zeros((9, 64))),
                     ("y_test", np.arange(9) % 3)):
            with z.open(f"{k}.npy", "w") as fh:
                np.lib.format.write_array(fh, v, allow_pickle=True)


def _periphery(path: Path, **override) -> None:
    path.write_text(json.dumps(override))


def _checkpoint(d: Path, data: bytes) -> None:
    (d / "run").mkdir()
    (d / "run" / "checkpoint.npz").write_bytes(data)


TRAIN_FAST = ["train", "--forward", "fast", "--backward", "fast", "--epochs", "1"]

BAD_INPUT = [
    # arrays
    ("complex G", lambda d: np.save(d / "c.npy", np.full((16, 8), 1e-5 + 1j)), ["mvm", "-G", "c.npy", "-V", "V.npy"],
     "complex"),
    ("boolean G", lambda d: np.save(d / "b.npy", np.ones((16, 8), bool)), ["mvm", "-G", "b.npy", "-V", "V.npy"],
     "booleans"),
    ("string G", lambda d: np.save(d / "s.npy", np.full((16, 8), "1e-5")), ["mvm", "-G", "s.npy", "-V", "V.npy"],
     "must hold numbers"),
    ("0-byte G", lambda d: (d / "e.npy").write_bytes(b""), ["mvm", "-G", "e.npy", "-V", "V.npy"], "e.npy is empty"),
    ("truncated G", lambda d: (d / "t.npy").write_bytes((d / "G.npy").read_bytes()[:100]),
     ["mvm", "-G", "t.npy", "-V", "V.npy"], "t.npy could not be read"),
    ("complex V", lambda d: np.save(d / "cv.npy", np.full((3, 16), 0.1 + 0j)), ["mvm", "-G", "G.npy", "-V", "cv.npy"],
     "complex"),
    ("huge cell on the fast backend", lambda d: _one_cell(d, 1e30), ["mvm", "-G", "huge.npy", "-V", "V.npy",
                                                                     "--backend", "fast"], "1 S"),
    ("all 1e300", lambda d: np.save(d / "huge.npy", np.full((16, 8), 1e300)),
     ["mvm", "-G", "huge.npy", "-V", "V.npy", "--backend", "fast"], "1 S"),
    # outputs
    ("output is the input", None, ["mvm", "-G", "G.npy", "-V", "V.npy", "-o", "G.npy"], "also an input"),
    ("output is the input without .npy", None, ["mvm", "-G", "G.npy", "-V", "V.npy", "-o", "G"], "also an input"),
    ("output is the voltages", None, ["netlist", "--conductances", "G.npy", "--voltages", "V.npy", "-o", "V.npy"],
     "also an input"),
    ("output is a folder", lambda d: (d / "sub").mkdir(), ["mvm", "-G", "G.npy", "-V", "V.npy", "-o", "sub"],
     "is a folder"),
    # options
    ("--workers 0", None, ["mvm", "-G", "G.npy", "-V", "V.npy", "--workers", "0"], "--workers: must be >= 1"),
    ("--timeout 0", None, ["mvm", "-G", "G.npy", "-V", "V.npy", "--timeout", "0"], "--timeout"),
    ("--pulses 0", None, ["device", "linear", "--pulses", "0"], "--pulses"),
    ("--pulses -3", None, ["device", "linear", "--pulses", "-3"], "--pulses"),
    ("--seeds 0", None, ["device", "linear", "--pulses", "5", "--seeds", "0"], "--seeds"),
    ("--pulses 1e8", None, ["device", "pcm", "--pulses", "100000000", "--seeds", "1"],
     "pulses must be an integer in 1..10,000"),
    # periphery configs and codes
    ("full_scale null", lambda d: _periphery(d / "p.json", full_scale=None),
     ["mvm", "-G", "G.npy", "--cell", "diff", "-V", "codes.npy", "--periphery", "p.json"], "full_scale"),
    ('"bits": true', lambda d: _periphery(d / "p.json", adc={"bits": True}),
     ["mvm", "-G", "G.npy", "--cell", "diff", "-V", "codes.npy", "--periphery", "p.json"], "adc: bits"),
    ("string codes", lambda d: (_periphery(d / "p.json"), np.save(d / "sc.npy", np.full((3, 16), "7"))),
     ["mvm", "-G", "G.npy", "--cell", "diff", "-V", "sc.npy", "--periphery", "p.json"], "input codes in sc.npy"),
    ("complex codes", lambda d: (_periphery(d / "p.json"), np.save(d / "cc.npy", np.full((3, 16), 7 + 1j))),
     ["mvm", "-G", "G.npy", "--cell", "diff", "-V", "cc.npy", "--periphery", "p.json"], "complex"),
    # calibrations
    (".npy as --calibration", None, ["mvm", "-G", "G.npy", "-V", "V.npy", "--backend", "calibrated",
                                     "--calibration", "G.npy"], "G.npy"),
    # data sets
    (".npy as --data", None, TRAIN_FAST + ["--data", "G.npy"], "G.npy"),
    ("truncated --data", lambda d: _truncated_npz(d / "t.npz"), TRAIN_FAST + ["--data", "t.npz"], "t.npz"),
    ("object arrays in --data", lambda d: _object_npz(d / "o.npz"), TRAIN_FAST + ["--data", "o.npz"], "X_train"),
    ("test classes unseen in training", lambda d: _digits_npz(d / "x.npz", y_test=np.array([0, 1, 2] * 2 + [99] * 3)),
     TRAIN_FAST + ["--data", "x.npz"], "classes the training set lacks"),
    ("--out is a file", lambda d: (d / "afile").write_text("x"), TRAIN_FAST + ["--out", "afile"],
     "--out afile is a file: give a folder"),
    ("--write-config is a folder", lambda d: (d / "sub").mkdir(), ["periphery", "--write-config", "sub"],
     "--write-config sub is a folder"),
    ("--calibration is a folder", lambda d: (d / "sub").mkdir(),
     ["mvm", "-G", "G.npy", "-V", "V.npy", "--backend", "calibrated", "--calibration", "sub"], "is a folder"),
    # options that would have no effect
    ("--calibration, fast reads", None, TRAIN_FAST + ["--calibration", "G.npy"], "--calibration is used by"),
    ("--size-integrator, no chain", None, ["mvm", "-G", "G.npy", "-V", "V.npy", "--size-integrator"],
     "--size-integrator sizes"),
    ("--mc-d2d-sigma, no --mc-runs", None, TRAIN_FAST + ["--mc-d2d-sigma", "0.2"],
     "--mc-d2d-sigma acts only with --mc-runs"),
    ("--audit-chain-samples, no --audit-every", None, TRAIN_FAST + ["--audit-chain-samples", "4"],
     "--audit-chain-samples acts only with --audit-every"),
    ("--sensing, no --write-config", None, ["periphery", "--sensing", "pairs"], "--sensing sets the read chain"),
    ("calibrate --tile, no export", None, ["calibrate", "--quick", "--tile", "64x64", "--out", "cal"],
     "--tile, --adc-bits and --dac-bits describe the aihwkit export"),
    # weights to deploy, audit logs
    ("deploy an .npy", None, ["deploy", "G.npy", "--out", "dep"], "holds one array"),
    ("deploy W0, W2", lambda d: np.savez(d / "w.npz", W0=np.zeros((65, 4)), W2=np.zeros((5, 10))),
     ["deploy", "w.npz", "--out", "dep"], "has W0, W2 but no W1"),
    ("deploy 3 classes", lambda d: np.savez(d / "w.npz", W0=np.zeros((65, 4)), W1=np.zeros((5, 3))),
     ["deploy", "w.npz", "--out", "dep"], "3 outputs, digits has 10 classes"),
    ("audit of a text file", lambda d: (d / "hi.txt").write_text("hi\n"), ["audit", "hi.txt"], "not an audit record"),
    ("0-byte checkpoint", lambda d: _checkpoint(d, b""), TRAIN_FAST + ["--out", "run"], "checkpoint"),
    ("garbage checkpoint", lambda d: _checkpoint(d, b"PK\x03\x04 garbage"), TRAIN_FAST + ["--out", "run"],
     "checkpoint"),
]


def _one_cell(d: Path, g: float) -> None:
    G = np.full((16, 8), 1e-5)
    G[3, 2] = g
    np.save(d / "huge.npy", G)


@pytest.mark.parametrize("name, setup, args, message", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_clear_line_and_exit_2(folder, name, setup, args, message):
    if setup is not None:
        setup(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    res = xbar(*args, cwd=folder)
    assert res.returncode == 2, f"{name}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith(("usage:", " "))]
    assert len(lines) == 1, res.stderr
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before, "a refused run changed a file"


def test_a_large_conductance_is_solved_exactly_or_refused(folder):
    """Up to the 1 S ceiling the fast solver answers what ngspice answers (or refuses); never a
    number it did not converge to."""
    G = np.full((16, 8), 1e-5)
    G[3, 2] = 0.9
    np.save(folder / "big.npy", G)
    for backend in ("fast", "spice"):
        res = xbar("mvm", "-G", "big.npy", "-V", "V.npy", "--backend", backend, "-o", f"{backend}.npy", cwd=folder)
        assert res.returncode == 0, res.stderr
    fast, spice = np.load(folder / "fast.npy"), np.load(folder / "spice.npy")
    assert np.abs(fast - spice).max() < 1e-6 * np.abs(spice).max()


# ----------------------------------------------------------------------------------------------
# Failing writes leave earlier outputs byte-identical


@pytest.mark.parametrize("args", [
    ["mvm", "-G", "G.npy", "-V", "V.npy", "--backend", "fast", "-o", "I.csv"],
    ["netlist", "--conductances", "G.npy", "-o", "xbar.cir"],
    ["mvm", "-G", "G.npy", "--cell", "diff", "-V", "codes.npy", "--periphery", "p.json", "--size-integrator",
     "--backend", "fast", "-o", "chain.npz"],
], ids=["mvm -o", "netlist -o", "mvm --periphery -o"])
def test_disk_full_leaves_the_earlier_output_intact(folder, args):
    """A first run writes its output; a second, larger one runs out of room (``ulimit -f`` just
    above the first output's size) and fails with one line; the first output is untouched."""
    _periphery(folder / "p.json")
    res = xbar(*args, cwd=folder)
    assert res.returncode == 0, res.stderr
    out = folder / args[-1]
    good = out.read_bytes()
    rng = np.random.default_rng(3)
    np.save(folder / "G.npy", rng.uniform(1e-6, 25e-6, (64, 32)))
    np.save(folder / "V.npy", rng.uniform(0, 0.2, (400, 64)))
    np.save(folder / "codes.npy", rng.integers(-100, 100, (400, 64)))
    res = xbar(*args, cwd=folder, fsize_kb=len(good) // 1024 + 1)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "File too large" in res.stderr and "Traceback" not in res.stderr
    assert out.read_bytes() == good
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []     # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask           # the output's mode, not the temporary's


# ----------------------------------------------------------------------------------------------
# One run per folder


def test_a_second_run_on_a_busy_folder_is_refused_naming_the_holder(folder):
    cache = folder / "cache"
    first = start("train", "--forward", "spice", "--epochs", "1", "--out", "run", cwd=folder, cache=cache)
    try:
        lock = folder / "run" / RunLock.NAME
        wait_for(lambda: lock.exists() and str(first.pid) in lock.read_text(), 60, "the first run's lock")
        second = xbar("train", "--forward", "fast", "--epochs", "1", "--out", "run", cwd=folder)
        assert second.returncode == 2, second.stderr
        assert f"in use by another run (PID {first.pid}" in second.stderr
        wait_for(lambda: ngspice_children(first.pid), 60, "the first run's ngspice")
        t0 = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert wait_exit(first, 10) == 143, first.stderr.read()
        assert time.monotonic() - t0 < 5.0
        assert "terminated" in first.stderr.read()
    finally:
        first.kill()
        first.wait()
    assert scratch_folders(cache) == []


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cosim.sim.files import RunLock; "
                               "lock = RunLock(sys.argv[1], 'holder').__enter__(); print('held', flush=True); time.sleep(60)",
                               str(tmp_path)], env=_env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderBusy, match=f"PID {holder.pid} .*holder"):
        with RunLock(tmp_path, "second"):
            pass
    holder.kill()
    holder.wait()
    with RunLock(tmp_path, "third"):
        assert "third" in (tmp_path / RunLock.NAME).read_text()


# ----------------------------------------------------------------------------------------------
# Kills and interrupts: no ngspice outlives its run, temporary decks go


@pytest.fixture
def big_read(tmp_path):
    rng = np.random.default_rng(11)
    np.save(tmp_path / "G.npy", rng.uniform(1e-6, 25e-6, (256, 256)))
    np.save(tmp_path / "V.npy", rng.uniform(0, 0.2, (40, 256)))     # about 30 s of ngspice: no race with its end
    return tmp_path


def _spice_read(folder: Path, cache: Path) -> tuple[subprocess.Popen, list[int]]:
    proc = start("mvm", "-G", "G.npy", "-V", "V.npy", "--backend", "spice", "--r-wire", "1", "-o", "I.npy",
                 cwd=folder, cache=cache)
    # the deck runs, not the `ngspice --version` probe before them: wait for their folder too
    children = wait_for(lambda: scratch_folders(cache) and ngspice_children(proc.pid), 120, "ngspice to start")
    return proc, children


def test_sigkill_leaves_no_ngspice_and_the_next_run_clears_its_decks(big_read):
    cache = big_read / "cache"
    proc, children = _spice_read(big_read, cache)
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(alive(c) for c in children), 5.0, "ngspice to die with its parent")
    assert scratch_folders(cache), "a SIGKILL cannot tidy up: its deck folders stay until the next run"
    np.save(big_read / "Gs.npy", np.full((4, 4), 1e-5))
    np.save(big_read / "Vs.npy", np.full((1, 4), 0.1))
    res = xbar("mvm", "-G", "Gs.npy", "-V", "Vs.npy", "--backend", "spice", "-o", "Is.npy", cwd=big_read,
               cache=cache)
    assert res.returncode == 0, res.stderr
    assert scratch_folders(cache) == []
    assert not (big_read / "I.npy").exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_stop_a_spice_run_promptly(big_read, sig, code):
    cache = big_read / "cache"
    proc, children = _spice_read(big_read, cache)
    t0 = time.monotonic()
    proc.send_signal(sig)
    assert wait_exit(proc, 10) == code, proc.stderr.read()
    assert time.monotonic() - t0 < 3.0             # typically 0.2 s; slack for a loaded machine
    assert not any(alive(c) for c in children)
    assert scratch_folders(cache) == []
    assert "Traceback" not in proc.stderr.read()


def test_keep_decks_takes_a_relative_folder(folder):
    res = xbar("mvm", "-G", "G.npy", "-V", "V.npy", "--backend", "spice", "--keep-decks", "decks", "-o", "I.npy",
               cwd=folder)
    assert res.returncode == 0, res.stderr
    assert list((folder / "decks").rglob("*.cir")) and list((folder / "decks").rglob("*.raw"))


def test_a_sigkilled_training_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL (no handler runs) in the middle of an epoch: the last checkpoint is whole (written
    to a temporary file and renamed), the lock is taken over, and the same command finishes with
    the numbers of a run that was never stopped."""
    cmd, ckpt, proc = _full_run_then_start_another(tmp_path, "--checkpoint-every", "3", "--checkpoint-seconds", "0")
    try:
        def mid_run():       # a checkpoint past the first epoch's middle, the run still going
            if proc.poll() is not None or not ckpt.exists():
                return False
            try:
                with np.load(ckpt) as z:
                    meta = json.loads(str(z["meta"]))
            except (OSError, ValueError, KeyError, EOFError):
                return False         # being replaced right now: look again
            return meta["epoch"] == 0 and meta["batch"] >= 60
        wait_for(mid_run, 300, "the run's checkpoint in its first epoch")
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    _resumes_to_the_full_run(tmp_path, cmd)


def _full_run_then_start_another(tmp_path: Path, *cadence: str) -> tuple[list[str], Path, subprocess.Popen]:
    """A short fast training run to its end in ``full``; the same command started in ``cut``."""
    cmd = ["train", "--forward", "fast", "--backward", "fast", "--update", "fast", "--hidden", "8", "--epochs", "2",
           *cadence]
    full = xbar(*cmd, "--out", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    return cmd, tmp_path / "cut" / "checkpoint.npz", start(*cmd, "--out", "cut", cwd=tmp_path, cache=tmp_path / "cache")


def _resumes_to_the_full_run(tmp_path: Path, cmd: list[str]) -> None:
    again = xbar(*cmd, "--out", "cut", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    with np.load(tmp_path / "full" / "checkpoint.npz") as a, np.load(tmp_path / "cut" / "checkpoint.npz") as b:
        for key in ("gp0", "gm0", "gp1", "gm1", "soft0", "soft1"):
            assert np.array_equal(a[key], b[key]), key
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("full", "cut"))
    assert ma["history"] == mb["history"]


def test_sigterm_saves_the_mini_batch_under_way_and_the_run_resumes_from_it(tmp_path):
    """SIGTERM with checkpoints throttled to one an hour: the run finishes the mini-batch under
    way, saves it, says so and exits with 143; the same command goes on from that mini-batch to
    the numbers of a run that was never stopped."""
    cmd, ckpt, proc = _full_run_then_start_another(tmp_path, "--checkpoint-every", "1", "--checkpoint-seconds",
                                                   "3600")
    try:
        wait_for(ckpt.exists, 300, "the first checkpoint (the first mini-batch)")
        time.sleep(1.0)                           # about 50 mini-batches on
        assert proc.poll() is None, "the run finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 10) == 143
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    with np.load(ckpt) as z:
        meta = json.loads(str(z["meta"]))
    assert (meta["epoch"], meta["batch"]) != (0, 1)
    assert f"checkpoint saved after {meta['epoch']} epochs and {meta['batch']} mini-batches" in err, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    _resumes_to_the_full_run(tmp_path, cmd)


def test_a_machine_without_ngspice_is_told_how_to_get_it(folder):
    """No ngspice on PATH: a spice read stops with one line that names it and how to install it;
    doctor reports the failed check (exit 1); fast reads do not need ngspice."""
    env = {**_env(), "PATH": str(folder)}
    run = lambda *a: subprocess.run(XBAR + list(a), cwd=folder, env=env, capture_output=True, text=True,  # noqa: E731
                                    timeout=300)
    res = run("mvm", "-G", "G.npy", "-V", "V.npy", "--backend", "spice")
    assert res.returncode == 2 and "no 'ngspice' on PATH" in res.stderr and "apt-get install" in res.stderr
    assert "Traceback" not in res.stderr
    doctor = run("doctor")
    assert doctor.returncode == 1 and "ngspice" in doctor.stdout + doctor.stderr
    assert run("mvm", "-G", "G.npy", "-V", "V.npy", "--backend", "fast", "-o", "I.npy").returncode == 0
