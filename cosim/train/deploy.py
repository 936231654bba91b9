"""Ex-situ deployment: trained weights programmed onto the arrays, then read over time.

Layer: cosim.train. :func:`deploy` maps each layer's weights onto conductance pairs of a device
(its conductance range; tiles of at most ``max_rows`` x ``max_cols``) and programs every device
from its RESET state by write-verify (:func:`cosim.write.program.write_verify`: on the device's
twin, or pulse trains in ngspice), recording per cell the pulses it took and whether it reached
its target within ``tol``, and per layer the programming error. :func:`infer` reads a test set
through the programmed arrays at times after programming: each device's conductance drifts as
(t/t0)^-nu with the device's exponent and its device-to-device spread, plus read noise
(:meth:`models.pcm.PCM.read_conductance`), on any read backend; Monte Carlo repeats draw the
spread and the noise. Global drift compensation, as practised on chips: before a layer's reads
at time t, one calibration read of an all-full-scale input at t is compared with the same read
right after programming, and the layer's outputs are multiplied by the ratio of their mean
magnitudes (one scalar per layer, applied digitally).
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cosim.sim.files import RunLock, atomic_json, atomic_path, save_figure
from cosim.train.data import Dataset
from cosim.train.layers import AnalogLayer, LayerConfig
from cosim.train.network import sigmoid
from cosim.write.mapping import tile_slices, to_conductances
from cosim.write.pair_update import mapping_for
from cosim.write.program import TableDevice, write_verify
from cosim.write.step_table import StepTable
from models.errors import ParameterError, ShapeError, real_array
from models.registry import get_device

__all__ = ["DeployConfig", "load_weights", "check_weights_fit", "deploy", "load_deployed", "infer", "parse_times",
           "DEPLOYED", "PROGRAM_CSV"]

DEPLOYED = "deployed.npz"
PROGRAM_CSV = "program.csv"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365.25 * 86400.0}


@dataclass(frozen=True)
class DeployConfig:
    """How weights become programmed arrays.

    device: registry name (its conductance range is the mapping's); tol: write-verify
    tolerance [S]; max_rounds: write-verify rounds; max_pulses: most pulses a device may take
    (None: no cap); program: ``"fast"`` (the device twin),
    ``"table"`` (the device's step table fitted to SPICE, with its spread) or ``"spice"`` (pulse
    trains in ngspice); w_max: weight of a full pair (None: the largest |weight| of each layer);
    max_rows, max_cols, r_wire: the arrays the layers are tiled on; seed: the step table's spread.
    """

    device: str = "pcm"
    tol: float = 0.3e-6
    max_rounds: int = 20
    max_pulses: int | None = None
    program: str = "fast"
    w_max: float | None = None
    max_rows: int = 64
    max_cols: int = 64
    r_wire: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        get_device(self.device)
        if self.program not in ("fast", "table", "spice"):
            raise ParameterError(f"program must be 'fast' (device twin), 'table' (its step table fitted to SPICE) "
                                 f"or 'spice', got {self.program!r}")
        if not (self.tol > 0 and math.isfinite(self.tol)) or self.max_rounds < 1:
            raise ParameterError(f"need tol > 0 and max_rounds >= 1, got {self.tol} and {self.max_rounds}")
        if self.max_pulses is not None and (isinstance(self.max_pulses, bool) or self.max_pulses < 1):
            raise ParameterError(f"max_pulses must be an integer >= 1 or None, got {self.max_pulses!r}")
        if self.max_rows < 2 or self.max_cols < 1 or self.r_wire < 0:
            raise ParameterError("max_rows >= 2, max_cols >= 1 and r_wire >= 0 are needed")


def load_weights(source: str | Path) -> list[np.ndarray]:
    """Layer matrices (n_in + 1, n_out), the last row the bias: from a run folder of ``xbar
    train`` (its checkpoint's software weights) or an ``.npz`` of ``W0, W1, ...`` (with
    ``b0, b1, ...`` appended as bias rows when present). Every matrix is checked: real, finite,
    2-D, one feeding the next."""
    p = Path(source)
    keys = "soft" if p.is_dir() else "W"
    if p.is_dir():
        p = p / "checkpoint.npz"
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist: give a run folder of xbar train or an .npz of W0, W1, ...")
    try:
        z = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ParameterError(f"{p} cannot be read ({type(exc).__name__}: {str(exc)[:120]}): give a run folder of "
                             "xbar train or an .npz of W0, W1, ...") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ParameterError(f"{p} holds one array: give an .npz of W0, W1, ... (and b0, b1, ...) or a run folder")
    with z:
        found = sorted(int(k[len(keys):]) for k in z.files if re.fullmatch(rf"{keys}\d+", k))
        if not found:
            raise ParameterError(f"{p} holds no {keys}0, {keys}1, ... layer matrices")
        if found != list(range(len(found))):
            missing = sorted(set(range(max(found) + 1)) - set(found))
            raise ParameterError(f"{p} has {', '.join(f'{keys}{k}' for k in found)} but no "
                                 f"{', '.join(f'{keys}{k}' for k in missing)}: the layers must be numbered from 0")
        out = []
        for k in found:
            W = real_array(f"{p}: {keys}{k}", z[f"{keys}{k}"])
            if W.ndim != 2 or 0 in W.shape:
                raise ShapeError(f"{p}: {keys}{k} must be a (inputs, outputs) matrix, got shape {W.shape}")
            if keys == "W" and f"b{k}" in z.files:
                b = real_array(f"{p}: b{k}", z[f"b{k}"])
                if b.shape != (W.shape[1],):
                    raise ShapeError(f"{p}: b{k} has shape {b.shape}; W{k} {W.shape} needs ({W.shape[1]},)")
                W = np.vstack([W, b[None, :]])
            out.append(W)
    for k, (a, b) in enumerate(zip(out[:-1], out[1:])):
        if a.shape[1] + 1 != b.shape[0]:
            raise ShapeError(f"{p}: layer {k} ({a.shape}) does not feed layer {k + 1} ({b.shape}) with a bias row")
    return out


def check_weights_fit(weights: list[np.ndarray], data: Dataset) -> None:
    """The network ``weights`` takes ``data``'s images and gives one output per class."""
    n_in, n_out = weights[0].shape[0], weights[-1].shape[1]
    if n_in != data.n_features + 1:
        raise ShapeError(f"the first layer takes {n_in - 1} inputs (plus its bias row), the {data.name} images have "
                         f"{data.n_features} pixels")
    if n_out != data.n_classes:
        raise ShapeError(f"the last layer has {n_out} outputs, {data.name} has {data.n_classes} classes")


def _layer_cfg(cfg: DeployConfig, W: np.ndarray) -> LayerConfig:
    w_max = cfg.w_max if cfg.w_max is not None else float(max(np.abs(W).max(), 1e-12))
    beyond = float(np.mean(np.abs(W) > w_max))
    if beyond > 0:
        warnings.warn(f"w_max {w_max:g} is below the largest weight {np.abs(W).max():g}: {100 * beyond:.1f} % of "
                      "the weights are clipped to +-w_max", RuntimeWarning, stacklevel=2)
    return LayerConfig(mapping=mapping_for(get_device(cfg.device), w_max), r_wire=cfg.r_wire,
                       max_rows=cfg.max_rows, max_cols=cfg.max_cols)


def deploy(weights: list[np.ndarray], cfg: DeployConfig, out_dir: str | Path, *, data: Dataset | None = None,
           table: StepTable | None = None, progress=None) -> dict:
    """Program every layer; writes ``deployed.npz``, ``deploy.json``, ``program.csv`` (the
    write-verify program, round by round: :func:`_program_csv`) and ``pulses.csv`` (per
    device: layer, row, column, side, target and reached conductance, pulses, converged).
    ``cfg.program == "table"``: pulses move the devices as ``table`` (the device's step table
    fitted to SPICE, with its spread; seeded by ``cfg.seed``) says."""
    out = Path(out_dir)
    device = get_device(cfg.device)
    if data is not None:
        check_weights_fit(weights, data)
    if (cfg.program == "table") != (table is not None):
        raise ParameterError("program='table' needs the device's step table (table=, xbar deploy --device-table "
                             "FILE), and a step table needs program='table'")
    programmed = device if table is None else TableDevice(device, table, np.random.default_rng(cfg.seed))
    backend = "fast" if cfg.program == "table" else cfg.program
    g_lo, g_hi = np.sort(programmed.to_conductance(np.array(programmed.state_range, float)))
    with RunLock(out, "deploy"):
        t0 = time.perf_counter()
        arrays, layers, rows = {}, [], []
        for k, W in enumerate(weights):
            lc = _layer_cfg(cfg, W)
            gp_t, gm_t, scale = to_conductances(W, lc.mapping)
            # g_min + w_max / scale can land one rounding step past g_max: hold it in the device range
            gp_t, gm_t = np.clip(gp_t, g_lo, g_hi), np.clip(gm_t, g_lo, g_hi)
            res = {}
            for side, target in (("plus", gp_t), ("minus", gm_t)):
                s0 = programmed.reset(np.zeros(target.shape)) if hasattr(programmed, "reset") else \
                    programmed.from_conductance(np.full(target.shape, lc.mapping.g_min))
                res[side] = write_verify(programmed, s0, target, tol=cfg.tol, max_rounds=cfg.max_rounds,
                                         backend=backend, r_wire=cfg.r_wire, record=True,
                                         max_pulses=cfg.max_pulses)
                # the device states that give the programmed conductances (a table's state is its conductance)
                arrays[f"state_{side}{k}"] = device.from_conductance(res[side].conductance) if table is not None \
                    else res[side].states
                arrays[f"target_{side}{k}"] = target
                rows.append((k, side, target, res[side]))
            arrays[f"scale{k}"], arrays[f"W{k}"] = scale, W
            layers.append(_layer_record(k, W, lc, scale, res, gp_t, gm_t))
            if progress:
                progress(f"layer {k}: {layers[-1]['pulses']} pulses, {layers[-1]['not_converged']} cells off target")
        summary = {"config": asdict(cfg), "layers": layers, "seconds": time.perf_counter() - t0,
                   "tiles": [len(tile_slices(W.shape[0], W.shape[1], cfg.max_rows, cfg.max_cols)) for W in weights]}
        if data is not None:
            summary["accuracy_software"] = _accuracy_software(weights, data)
            summary["accuracy_programmed"] = infer_once(load_from_arrays(arrays, cfg), data, "fast", None, None)
        with atomic_path(out / DEPLOYED) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, config=json.dumps(asdict(cfg)), **arrays)
        _pulses_csv(out / "pulses.csv", rows)
        _program_csv(out / PROGRAM_CSV, rows)
        atomic_json(out / "deploy.json", summary, indent=2)
    return summary


def _layer_record(k, W, lc, scale, res, gp_t, gm_t) -> dict:
    gp, gm = res["plus"].conductance, res["minus"].conductance
    W_got = scale[None, :] * (gp - gm)
    g_err = np.concatenate([(gp - gp_t).ravel(), (gm - gm_t).ravel()])
    return {"layer": k, "shape": list(W.shape), "w_max": lc.mapping.w_max,
            "pulses": int(res["plus"].pulses + res["minus"].pulses),
            "pulses_per_device_max": int(max(r.cell_pulses.max() for r in res.values())),
            "rounds": int(max(r.rounds for r in res.values())),
            "not_converged": int(sum((~r.converged).sum() for r in res.values())),
            "g_error_rms_S": float(np.sqrt(np.mean(g_err ** 2))),
            "weight_error_rel_rms": float(np.sqrt(np.mean((W_got - W) ** 2) / max(np.mean(W ** 2), 1e-300)))}


def _pulses_csv(path: Path, rows) -> None:
    lines = ["layer,row,col,side,target_S,reached_S,pulses,converged"]
    for k, side, target, r in rows:
        ii, jj = np.indices(target.shape)
        for i, j, t, g, n, c in zip(ii.ravel(), jj.ravel(), target.ravel(), r.conductance.ravel(),
                                    r.cell_pulses.ravel(), r.converged.ravel()):
            lines.append(f"{k},{i},{j},{side},{t:.6e},{g:.6e},{int(n)},{int(c)}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _program_csv(path: Path, rows) -> None:
    """The write-verify program, one row per device and round in which it was written: the
    verify read the pulses were chosen on, a RESET first or not, then the pulses and their
    polarity (+1 SET direction, -1 the opposite); a last row per device with its final read."""
    lines = ["layer,row,col,side,round,verify_read_S,reset,pulses,polarity"]
    for k, side, _target, r in rows:
        for rnd, (g, reset, n) in enumerate(r.program, 1):
            for i, j in zip(*np.nonzero(reset | (n != 0))):
                lines.append(f"{k},{i},{j},{side},{rnd},{g[i, j]:.6e},{int(reset[i, j])},{abs(int(n[i, j]))},"
                             f"{int(np.sign(n[i, j]))}")
        final = len(r.program) + 1
        for (i, j), g in np.ndenumerate(r.conductance):
            lines.append(f"{k},{i},{j},{side},{final},{g:.6e},0,0,0")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


@dataclass
class Deployed:
    """A programmed network: per layer the device states of both sides, the column scales and
    the layer config; ``device`` the programmed device model."""

    cfg: DeployConfig
    states: list[tuple[np.ndarray, np.ndarray]]
    scales: list[np.ndarray]
    weights: list[np.ndarray]

    @property
    def device(self):
        return get_device(self.cfg.device)

    def layers(self, conductances: list[tuple[np.ndarray, np.ndarray]], backend_cfg: dict | None = None) -> list:
        out = []
        for (gp, gm), W in zip(conductances, self.weights):
            lc = replace(_layer_cfg(self.cfg, W), **(backend_cfg or {}))
            layer = AnalogLayer(W[:-1], lc, b=W[-1])
            layer.set_conductances(gp, gm)
            out.append(layer)
        return out


def load_from_arrays(z, cfg: DeployConfig) -> Deployed:
    n = len([k for k in z if re.fullmatch(r"scale\d+", k)])
    return Deployed(cfg, [(np.asarray(z[f"state_plus{k}"]), np.asarray(z[f"state_minus{k}"])) for k in range(n)],
                    [np.asarray(z[f"scale{k}"]) for k in range(n)], [np.asarray(z[f"W{k}"]) for k in range(n)])


def load_deployed(run_dir: str | Path) -> Deployed:
    """The programmed network of ``xbar deploy``'s folder."""
    p = Path(run_dir) / DEPLOYED
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist: run xbar deploy first")
    with np.load(p, allow_pickle=False) as z:
        cfg = DeployConfig(**json.loads(str(z["config"])))
        return load_from_arrays({k: z[k] for k in z.files}, cfg)


def _accuracy_software(weights: list[np.ndarray], data: Dataset) -> float:
    h = data.X_test
    for k, W in enumerate(weights):
        z = np.hstack([h, np.ones((len(h), 1))]) @ W
        h = z if k == len(weights) - 1 else sigmoid(z)
    return float((h.argmax(axis=1) == data.y_test).mean())


def _forward(layers: list, X: np.ndarray, backend: str, gains: list[float]) -> np.ndarray:
    h = X
    for k, (layer, a) in enumerate(zip(layers, gains)):
        z = layer.forward(h, backend) * a
        h = z if k == len(layers) - 1 else sigmoid(z)
    return h


def _gains(dep: Deployed, layers_0: list, layers_t: list, backend: str) -> list[float]:
    """Global drift compensation: per layer, the mean |output| of an all-full-scale calibration
    read right after programming over the same read at time t."""
    out = []
    for l0, lt in zip(layers_0, layers_t):
        x = np.ones((1, l0.n_in - 1 if l0.cfg.bias else l0.n_in))
        a0, at = np.abs(l0.forward(x, backend)).mean(), np.abs(lt.forward(x, backend)).mean()
        out.append(float(a0 / at) if at > 0 else 1.0)
    return out


def infer_once(dep: Deployed, data: Dataset, backend: str, t: float | None, rng: np.random.Generator | None,
               compensate: bool = False, layer_kw: dict | None = None) -> float:
    """Test accuracy read at time ``t`` after programming (None: right after, no noise)."""
    dev = dep.device
    reads = []
    for sp, sm in dep.states:
        var = {"z_nu": rng.standard_normal(sp.shape)} if rng is not None else None
        varm = {"z_nu": rng.standard_normal(sm.shape)} if rng is not None else None
        gp = dev.read_conductance(sp, t, rng, var) if hasattr(dev, "read_conductance") else dev.to_conductance(sp)
        gm = dev.read_conductance(sm, t, rng, varm) if hasattr(dev, "read_conductance") else dev.to_conductance(sm)
        reads.append((np.maximum(gp, 1e-12), np.maximum(gm, 1e-12)))   # noise can close a cell, not below 0
    layers_t = dep.layers(reads, layer_kw)
    gains = [1.0] * len(layers_t)
    if compensate:
        layers_0 = dep.layers([(dev.to_conductance(sp), dev.to_conductance(sm)) for sp, sm in dep.states], layer_kw)
        gains = _gains(dep, layers_0, layers_t, backend)
    return float((_forward(layers_t, data.X_test, backend, gains).argmax(axis=1) == data.y_test).mean())


#: The latest inference time [s] (1000 years): drift laws are fitted over seconds to years.
MAX_TIME = 1000 * 365.25 * 86400.0


def parse_times(text: str) -> list[float]:
    """``"1s,1h,1d,1y"`` -> seconds (units s, m, h, d, w, y; a bare number is seconds)."""
    out = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*([0-9.]+(?:e[-+]?\d+)?)\s*([smhdwy]?)\s*", part)
        if not m or float(m.group(1)) <= 0:
            raise ParameterError(f"time {part!r}: give a positive number with a unit s, m, h, d, w or y (1h, 1d, 1y)")
        t = float(m.group(1)) * _UNITS[m.group(2) or "s"]
        if not t <= MAX_TIME:
            raise ParameterError(f"time {part!r} is beyond {MAX_TIME / _UNITS['y']:,.0f} years")
        out.append(t)
    return out


def infer(run_dir: str | Path, data: Dataset, times: list[float], *, runs: int = 20, backend: str = "fast",
          seed: int = 0, layer_kw: dict | None = None, progress=None) -> dict:
    """Accuracy at each time after programming, Monte Carlo over ``runs`` draws of the drift
    spread and read noise, without and with global drift compensation; writes ``infer.json``
    and ``infer.png`` into ``run_dir``."""
    dep = load_deployed(run_dir)
    if runs < 1:
        raise ParameterError(f"runs must be >= 1, got {runs}")
    with RunLock(run_dir, "infer"):
        return _infer(dep, run_dir, data, times, runs, backend, seed, layer_kw, progress)


def _infer(dep: Deployed, run_dir, data: Dataset, times, runs: int, backend: str, seed: int, layer_kw, progress) -> dict:
    t0 = time.perf_counter()
    rows = []
    for t in times:
        row = {"t_s": t}
        for comp in (False, True):
            accs = [infer_once(dep, data, backend, t, np.random.default_rng([seed, r, int(t)]), comp, layer_kw)
                    for r in range(runs)]
            key = "compensated" if comp else "uncompensated"
            row[key] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "min": float(np.min(accs))}
        rows.append(row)
        if progress:
            progress(f"t = {t:g} s: {100 * row['uncompensated']['mean']:.2f} % "
                     f"({100 * row['compensated']['mean']:.2f} % compensated)")
    chain = (layer_kw or {}).get("periphery")
    result = {"backend": backend, "runs": runs, "device": dep.cfg.device, "times": rows,
              "periphery": None if chain is None else chain.to_dict(),
              "software_accuracy": _accuracy_software(dep.weights, data), "seconds": time.perf_counter() - t0}
    atomic_json(Path(run_dir) / "infer.json", result, indent=2)
    _plot(result, Path(run_dir) / "infer.png")
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in result["times"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, m in (("uncompensated", "o-"), ("compensated", "s-")):
        mean = np.array([100 * r[key]["mean"] for r in result["times"]])
        std = np.array([100 * r[key]["std"] for r in result["times"]])
        ax.errorbar(t, mean, yerr=std, fmt=m, capsize=3, label=key)
    ax.axhline(100 * result["software_accuracy"], color="k", ls="--", label="software")
    ax.set(xscale="log", xlabel="time after programming [s]", ylabel="test accuracy [%]",
           title=f"{result['device']}: accuracy over time ({result['runs']} Monte Carlo runs, {result['backend']} reads)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
