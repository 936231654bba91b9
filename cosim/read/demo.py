"""One crossbar read three ways and compared: ngspice, the exact fast solver, the ideal product.

Layer: cosim.read. ``xbar demo`` builds a random crossbar with wire parasitics, reads a batch of inputs in
ngspice (batched ``.dc`` sweeps over the cores), in the exact fast solver and ideally, and
reports their agreement and timings; writes ``demo.json``, ``demo.npz`` and ``demo.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cosim.sim.files import atomic_json, atomic_path, save_figure
from cosim.read.mvm import Crossbar
from netlists.crossbar import CrossbarSpec

AGREEMENT = 1e-6  # fast vs spice, relative to the largest spice current


def run_demo(*, size: int = 64, batch: int = 20, r_wire: float = 1.0, out_dir: Path = Path("xbar-out/demo"),
             seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    spec = CrossbarSpec(rows=size, cols=size, r_row=r_wire, r_col=r_wire, v_read=0.2)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(0.0, spec.v_read, (batch, size))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xb = Crossbar(spec, G)
    rows, results = [], {}
    for transpose in (False, True):
        for backend in ("spice", "fast", "ideal"):
            t0 = time.perf_counter()
            results[(backend, transpose)] = xb.read(V, transpose=transpose, backend=backend)
            rows.append({"read": "transposed" if transpose else "forward", "backend": backend,
                         "seconds": time.perf_counter() - t0})
    for row in rows:
        ref = results[("spice", row["read"] == "transposed")]
        got = results[(row["backend"], row["read"] == "transposed")]
        row["max_error_vs_spice"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        row["ms_per_vector"] = 1e3 * row["seconds"] / batch
    ok = all(r["max_error_vs_spice"] < AGREEMENT for r in rows if r["backend"] == "fast")
    lines = [f"crossbar {size}x{size}, {r_wire:g} ohm per segment, conductances 1-25 uS, "
             f"{batch} input vectors in [0, {spec.v_read:g}] V",
             f"{'read':<11} {'backend':<7} {'time [s]':>9} {'ms/vector':>10} {'max |error| / max |I_spice|':>28}"]
    for r in rows:
        lines.append(f"{r['read']:<11} {r['backend']:<7} {r['seconds']:>9.3f} {r['ms_per_vector']:>10.2f} "
                     f"{r['max_error_vs_spice']:>28.2e}")
    lines.append(f"fast solver {'agrees' if ok else 'DISAGREES'} with ngspice to {AGREEMENT:g}; the ideal "
                 "product (V @ G) shows what the wire resistance costs")
    summary = {"spec": {"rows": size, "cols": size, "r_wire_ohm": r_wire, "batch": batch, "seed": seed},
               "table": rows, "ok": ok, "text": "\n".join(lines), "out_dir": str(out_dir)}
    atomic_json(out_dir / "demo.json", {k: v for k, v in summary.items() if k != "text"}, indent=2)
    with atomic_path(out_dir / "demo.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, G=G, V=V, **{f"I_{b}_{'T' if t else 'F'}": v for (b, t), v in results.items()})
    _plot(results, out_dir / "demo.png", size, r_wire)
    return summary


def _plot(results: dict, path: Path, size: int, r_wire: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, transpose in zip(axes, (False, True)):
        spice = results[("spice", transpose)].ravel() * 1e6
        for backend, marker in (("ideal", "x"), ("fast", "o")):
            ax.plot(spice, results[(backend, transpose)].ravel() * 1e6, marker, ms=3, alpha=0.6,
                    mfc="none" if marker == "o" else None, label=backend)
        lim = [min(0, spice.min()), spice.max() * 1.05]
        ax.plot(lim, lim, "k-", lw=0.8, label="y = x")
        ax.set_xlabel("ngspice current [uA]")
        ax.set_ylabel("backend current [uA]")
        ax.set_title(f"{'transposed' if transpose else 'forward'} read, {size}x{size}, {r_wire:g} ohm/segment")
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
