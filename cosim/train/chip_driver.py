"""Run an exported network in ngspice, layer by layer: the driver of a chip folder.

Layer: cosim.train, standalone: it imports nothing of xbar-cosim (only Python 3 and numpy), so
``xbar export`` copies this file into the chip folder as ``run_network.py`` and a circuit
designer runs it there without the toolkit.

Every read is one plain ``ngspice -b`` of an exported deck: the array with its wires, DACs,
integrators and ADCs at the programmed conductances. Between layers the driver does what the
digital side of the chip does: it decodes the ADC codes (the deck's own decode table), adds the
row tiles' partial sums, applies the column scales and the activation, and turns the next
layer's inputs into DAC codes, then into the DAC waveforms of the next decks (the deck's own
table of waveform corners per code). The predictions are compared with the fast backend's,
which the export stored beside the decks.

Usage (in the chip folder)::

    python3 run_network.py                 # every exported test image
    python3 run_network.py --images 20 --jobs 2

A read that finished is kept in ``work/`` (keyed by its inputs): an interrupted run resumes where
it stopped. Results: ``results.csv`` (per image: label, ngspice and fast predictions, logits) and
``results.json`` (agreement, accuracy, times).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["BEGIN", "END", "dac_block", "drive_codes", "read_raw", "run_network", "main"]

LOCK = ".xbar.lock"
BEGIN = "* BEGIN DAC (written per read by run_network.py)"
END = "* END DAC"


_RUNNING: set = set()     # ngspice processes of this driver, killed when a run stops early


def stop_all() -> None:
    """Kill every ngspice this driver started that is still running."""
    for proc in list(_RUNNING):
        proc.kill()


class DriverError(Exception):
    """A chip folder or an ngspice run the driver cannot use: the message names it."""


# ----------------------------------------------------------------------------------------------
# Digital side: codes in, codes out


def drive_codes(h: np.ndarray, layer: dict) -> tuple[np.ndarray, np.ndarray]:
    """Signed DAC codes (images, layer inputs + bias) and each image's scale ``amax``: the layer
    inputs with the bias input 1 appended, divided by their largest magnitude, rounded to the
    DAC's codes."""
    xa = np.hstack([h, np.ones((h.shape[0], 1))]) if layer["bias"] else h
    amax = np.abs(xa).max(axis=1, keepdims=True)
    amax[amax == 0] = 1.0
    m = (1 << int(layer["dac_bits"])) - 1
    v = float(layer["v_read"])   # the toolkit's drive voltages, back to [-1, 1]: the same rounding
    return np.rint(np.clip(xa / amax * v / v, -1, 1) * m).astype(np.int64), amax


def dac_block(codes: np.ndarray, tile: dict) -> str:
    """The DAC sources of one deck for a chunk of windows ``codes`` (windows, drive lines):
    each line's PWL corners from the deck's corner table, window k shifted by k T."""
    table = {int(c): np.asarray(v, float).reshape(-1, 2) for c, v in tile["corners"].items()}
    T = float(tile["window"])
    lines = [BEGIN]
    for i, node in enumerate(tile["drive_nodes"]):
        t, v = [0.0], [0.0]
        for k, c in enumerate(codes[:, i].tolist()):
            if c:
                corners = table[c]
                t += (k * T + corners[:, 0]).tolist()
                v += corners[:, 1].tolist()
        pairs = [f"{ti + 0.0:.12g} {vi + 0.0:.12g}" for ti, vi in zip(t, v)]
        body = "\n+ ".join(" ".join(pairs[j:j + 16]) for j in range(0, len(pairs), 16))
        lines.append(f"Vdac_{i} {node} 0 PWL(\n+ {body} )")
    lines.append(END)
    return "\n".join(lines)


def with_dac(deck: str, block: str) -> str:
    """The deck text with its DAC block replaced."""
    a, b = deck.find(BEGIN), deck.find(END)
    if a < 0 or b < a:
        raise DriverError("the deck has no DAC block between its BEGIN DAC and END DAC lines")
    return deck[:a] + block + deck[b + len(END):]


def decode(codes: np.ndarray, idle: np.ndarray, tile: dict) -> np.ndarray:
    """ADC codes (windows, sense lines) -> the tile's output currents [A] (windows, outputs):
    the charge of each code from the deck's decode table (windows without a driven line read 0),
    a differential pair's two columns subtracted, over the full-scale input time."""
    table = np.asarray(tile["decode_C"], float)
    if codes.min() < 0 or codes.max() >= table.size:
        raise DriverError(f"ADC codes outside 0..{table.size - 1}: the deck did not run as exported")
    q = np.where(idle[:, None], 0.0, table[codes])
    return (q[:, 0::2] - q[:, 1::2] if tile["differential"] else q) / float(tile["t_fs"])


# ----------------------------------------------------------------------------------------------
# ngspice


def read_raw(path: Path) -> dict[str, np.ndarray]:
    """The real vectors of an ngspice binary raw file (one plot), by lower-case name."""
    data = Path(path).read_bytes()
    at = data.find(b"Binary:\n")
    if at < 0:
        raise DriverError(f"{path} is not a binary ngspice raw file")
    head = data[:at].decode("latin-1").splitlines()
    nvar = npts = None
    names: list[str] = []
    for j, line in enumerate(head):
        if line.startswith("No. Variables:"):
            nvar = int(line.split(":")[1])
        elif line.startswith("No. Points:"):
            npts = int(line.split(":")[1])
        elif line.startswith("Variables:"):
            names = [head[j + 1 + k].split()[1].lower() for k in range(nvar or 0)]
    if not nvar or npts is None or len(names) != nvar:
        raise DriverError(f"{path}: its header names no variables or points")
    arr = np.frombuffer(data, dtype="<f8", count=nvar * npts, offset=at + 8).reshape(npts, nvar)
    return {n: arr[:, k] for k, n in enumerate(names)}


def run_deck(ngspice: str, deck: str, scratch: Path, n_sense: int, n_win: int, T: float) -> np.ndarray:
    """One ``ngspice -b`` of ``deck``: the ADC codes (windows, sense lines) at each window's end."""
    d = Path(tempfile.mkdtemp(dir=scratch))
    try:
        (d / "read.cir").write_text(deck)
        proc = subprocess.Popen([ngspice, "-b", "-r", "read.raw", "read.cir"], cwd=d, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        _RUNNING.add(proc)
        try:
            log, _ = proc.communicate()
        finally:
            _RUNNING.discard(proc)
        raw = d / "read.raw"
        if proc.returncode != 0 or not raw.exists():
            tail = "\n".join(log.strip().splitlines()[-6:])
            raise DriverError(f"ngspice failed (exit {proc.returncode}):\n{tail}")
        v = read_raw(raw)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    t = v["time"]
    at = (np.arange(n_win) + 1) * T
    out = []
    for j in range(n_sense):
        key = f"v(code{j})" if f"v(code{j})" in v else f"code{j}"
        if key not in v:
            raise DriverError(f"ngspice wrote no vector code{j}")
        out.append(np.interp(at, t, v[key]))
    return np.rint(np.stack(out, axis=-1)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# The network


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _tile_reads(folder: Path, net: dict, k: int, codes: np.ndarray, work: Path, pool, ngspice: str) -> list:
    """Submit every (tile, chunk) read of layer ``k``: futures of (tile, chunk start, codes)."""
    layer, B = net["layers"][k], int(net["chunk"])
    jobs = []
    for tile in layer["tiles"]:
        deck = (folder / tile["deck"]).read_text()
        x = codes[:, tile["inputs"][0]:tile["inputs"][1]]
        for lo in range(0, x.shape[0], B):
            chunk = np.zeros((B, x.shape[1]), np.int64)
            chunk[:min(B, x.shape[0] - lo)] = x[lo:lo + B]
            text = with_dac(deck, dac_block(chunk, tile))
            key = hashlib.sha256(text.encode()).hexdigest()[:20]
            done = work / f"{key}.npy"

            def read(text=text, done=done, tile=tile, lo=lo, chunk=chunk):
                if done.exists():
                    got = np.load(done)
                else:
                    got = run_deck(ngspice, text, work, tile["n_sense"], B, float(tile["window"]))
                    tmp = done.with_suffix(".tmp.npy")
                    np.save(tmp, got)
                    os.replace(tmp, done)
                return tile, lo, decode(got, ~chunk.any(axis=1), tile)
            jobs.append(pool.submit(read))
    return jobs


def _result(future):
    """A future's result, waiting in short steps: a signal the kernel hands to a worker thread is
    handled only when the main thread runs Python again."""
    while True:
        try:
            return future.result(timeout=0.1)
        except TimeoutError:
            continue


def _layers(folder: Path, net: dict, h: np.ndarray, n: int, work: Path, jobs: int, ngspice: str, say,
            t0: float) -> np.ndarray:
    """Every layer in turn: its reads in ngspice, then the digital side; the last layer's logits."""
    pool = ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1)
    try:
        for k, layer in enumerate(net["layers"]):
            codes, amax = drive_codes(h, layer)
            z = np.zeros((n, layer["n_out"]))
            futures = _tile_reads(folder, net, k, codes, work, pool, ngspice)
            for j, f in enumerate(futures, 1):
                tile, lo, out = _result(f)
                hi = min(lo + out.shape[0], n)
                z[lo:hi, tile["outputs"][0]:tile["outputs"][1]] += out[:hi - lo]
                say(f"layer {k}: {j}/{len(futures)} reads done ({time.perf_counter() - t0:.0f} s)")
            z = z * np.asarray(layer["scale"])[None, :] * amax / float(layer["v_read"])
            h = 0.5 * (1 + np.tanh(0.5 * z)) if layer["activation"] == "sigmoid" else z
    finally:   # an error or an interrupt: no further read starts
        pool.shutdown(wait=False, cancel_futures=True)
    return h


def run_network(folder: Path, *, images: int | None = None, jobs: int = 0, ngspice: str = "ngspice",
                say=print) -> dict:
    """Feed the exported test images through every layer in ngspice; returns the summary."""
    folder = Path(folder)
    net = json.loads((folder / "network.json").read_text())
    X = np.loadtxt(folder / "images.csv", delimiter=",", skiprows=1, ndmin=2)
    expected = np.loadtxt(folder / "expected.csv", delimiter=",", skiprows=1, ndmin=2)
    n = X.shape[0] if images is None else min(int(images), X.shape[0])
    labels, h = X[:n, 0].astype(int), X[:n, 1:]
    fast_pred, fast_logits = expected[:n, 1].astype(int), expected[:n, 2:]
    work = folder / "work"
    work.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    with open(folder / LOCK, "a") as lock:   # the toolkit's run lock: one run (or export) on the folder
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DriverError(f"{folder} is in use by another run (or an export): wait for it") from None
        try:
            h = _layers(folder, net, h, n, work, jobs, ngspice, say, t0)
        except BaseException:
            stop_all()
            raise
        return _results(folder, h, labels, fast_pred, fast_logits, t0)


def _results(folder: Path, h: np.ndarray, labels, fast_pred, fast_logits, t0: float) -> dict:
    """results.csv and results.json of a finished run; the summary."""
    n = len(labels)
    pred = h.argmax(axis=1)
    rows = ["image,label,prediction_ngspice,prediction_fast," + ",".join(f"logit{j}" for j in range(h.shape[1]))]
    rows += [f"{i},{labels[i]},{pred[i]},{fast_pred[i]}," + ",".join(f"{v:.6g}" for v in h[i]) for i in range(n)]
    _atomic_write(folder / "results.csv", "\n".join(rows) + "\n")
    summary = {"images": n, "agreement": float((pred == fast_pred).mean()),
               "accuracy_ngspice": float((pred == labels).mean()), "accuracy_fast": float((fast_pred == labels).mean()),
               "logit_rms_diff": float(np.sqrt(np.mean((h - fast_logits) ** 2))), "seconds": time.perf_counter() - t0}
    _atomic_write(folder / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the exported network in ngspice and compare with the fast backend.")
    p.add_argument("--images", type=int, default=None, help="the first N exported test images (default all)")
    p.add_argument("--jobs", type=int, default=0, help="ngspice processes at once (default: one per core)")
    p.add_argument("--ngspice", default="ngspice", help="the ngspice executable")
    args = p.parse_args(argv)
    if args.images is not None and args.images < 1:
        p.error("--images must be >= 1")
    if shutil.which(args.ngspice) is None:
        print(f"run_network: error: {args.ngspice} not found; install ngspice (>= 42)", file=sys.stderr)
        return 2
    try:
        s = run_network(Path(__file__).resolve().parent, images=args.images, jobs=args.jobs, ngspice=args.ngspice,
                        say=lambda m: print(m, file=sys.stderr, flush=True))
    except (DriverError, OSError, ValueError, KeyError) as exc:
        print(f"run_network: error: {exc}", file=sys.stderr)
        return 2
    print(f"{s['images']} images: ngspice predictions equal the fast backend's on {100 * s['agreement']:.2f} %; "
          f"accuracy {100 * s['accuracy_ngspice']:.2f} % (fast {100 * s['accuracy_fast']:.2f} %); {s['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
