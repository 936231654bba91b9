"""Every block fit to SPICE in one run: device step tables, integrator/ADC transfers and a Monte
Carlo sweep, their plots, JSON and Markdown tables.

Layer: cosim.calibrate. The three fits live in their own modules, each a library function
returning a JSON-able dict (lists and floats only):

* :func:`cosim.calibrate.devices.fit_device_steps`: step tables of the registry devices;
* :func:`cosim.calibrate.periphery.fit_periphery`: the integrator + ADC transfer;
* :func:`cosim.calibrate.montecarlo.monte_carlo_mvm`: MVM errors over sampled array instances.

This module holds what spans them: ``fit_all(out_dir)`` runs everything, ``plot_fits`` writes
PNGs, ``report_markdown`` the tables, ``calibrate_blocks`` is the block part of ``xbar
calibrate`` (reusing a folder's fits made with the same settings).

JSON (``fits.json`` of :func:`fit_all`)::

    {"devices":     {name: fit_device_steps(...)},
     "periphery":   {name: fit_periphery(...)},
     "monte_carlo": [monte_carlo_mvm(...), ...],     (one per sigma)
     "pngs":        [path, ...]}
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cosim.sim.files import atomic_json, save_figure
from cosim.calibrate.devices import fit_device_steps
from cosim.calibrate.montecarlo import Variation, monte_carlo_mvm
from cosim.calibrate.periphery import fit_periphery, periphery_configs
from cosim.sim.engine import SubprocessEngine
from cosim.write.step_table import StepTable
from models.adc import QuantizerParams
from models.registry import device_names

__all__ = ["FITS_VERSION", "BlockFitSettings", "plot_fits", "fit_all", "save_json", "load_json", "report_markdown",
           "calibrate_blocks"]


#: What :func:`fit_all` writes; raise it when that changes (another fit, another converter), so
#: that ``xbar calibrate`` refits instead of reusing an older ``blocks/fits.json``.
FITS_VERSION = 3


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return o


def save_json(results: dict, path) -> Path:
    """Write ``results`` as JSON (numpy scalars/arrays converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_json(path, _jsonable(results), indent=1, allow_nan=True)
    return path


def load_json(path) -> dict:
    return json.loads(Path(path).read_text())


def plot_fits(results: dict, out_dir) -> list[str]:
    """PNGs of a ``fit_all``-shaped dict: ``{"devices": {name: fit_device_steps(...)},
    "periphery": {name: fit_periphery(...)}, "monte_carlo": [monte_carlo_mvm(...), ...]}``
    (any part may be missing). Returns the written paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, r in results.get("devices", {}).items():
        dirs = list(r["curves"])
        fig, ax = plt.subplots(2, len(dirs), figsize=(5.5 * len(dirs), 7.5), squeeze=False)
        tab = StepTable.from_dict(r["table"])
        for j, d in enumerate(dirs):
            c = r["curves"][d]
            a = ax[0, j]
            a.plot(np.asarray(c["sample_g"]) * 1e6, np.asarray(c["sample_step"]) * 1e9, ".", ms=2,
                   color="0.6", label="SPICE (held out)")
            cv = tab.curves[d]
            g, mu, sd = (np.asarray(cv[k]) for k in ("g", "mean", "std"))
            a.plot(g * 1e6, mu * 1e9, "-", color="C0", label="step table")
            a.fill_between(g * 1e6, (mu - sd) * 1e9, (mu + sd) * 1e9, color="C0", alpha=0.2)
            a.plot(np.asarray(c["g_grid"]) * 1e6, np.asarray(c["twin_step"]) * 1e9, "--", color="C3", label="twin (nominal)")
            a.set_xlabel("G [uS]"), a.set_ylabel("step per pulse [nS]"), a.set_title(f"{name}: {d}")
            a.legend(fontsize=8)
            b = ax[1, j]
            for k, (s, t, w) in enumerate(zip(c["spice"], c["step_table"], c["twin"])):
                b.plot(np.asarray(s) * 1e6, "-", color=f"C{k % 10}", lw=1.2, label="SPICE" if k == 0 else None)
                b.plot(np.asarray(t) * 1e6, "o", color=f"C{k % 10}", ms=2.5, mfc="none", label="table" if k == 0 else None)
                b.plot(np.asarray(w) * 1e6, ":", color=f"C{k % 10}", label="twin" if k == 0 else None)
            e = r["error"]
            b.set_title(f"held out: table {100 * e['step_table']['rmse_frac']:.2g} %, "
                        f"twin {100 * e['twin']['rmse_frac']:.2g} % RMS of range", fontsize=9)
            b.set_xlabel("pulse"), b.set_ylabel("G [uS]"), b.legend(fontsize=8)
        fig.tight_layout()
        p = out / f"steps_{name}.png"
        save_figure(fig, p, dpi=110), plt.close(fig)
        paths.append(str(p))
    for name, r in results.get("periphery", {}).items():
        c = r["curves"]
        q = np.asarray(c["q"]) * 1e12
        fig, ax = plt.subplots(1, 3, figsize=(15, 4))
        ax[0].plot(q, c["v_spice"], "o", ms=3, label="SPICE")
        ax[0].plot(q, c["v_fit"], "-", label="fit")
        ax[0].plot(q, c["v_twin"], "--", label="twin")
        ax[0].set_xlabel("charge [pC]"), ax[0].set_ylabel("integrator output [V]"), ax[0].legend()
        lsb = (r["fit"]["q_fs"] / r["c_int"]) * 2 / r["fit"]["n_codes"]
        ax[1].plot(q, (np.asarray(c["v_fit"]) - c["v_spice"]) / lsb, "o-", ms=3, label="fit - SPICE")
        ax[1].plot(q, (np.asarray(c["v_twin"]) - c["v_spice"]) / lsb, "s--", ms=3, label="twin - SPICE")
        ax[1].set_xlabel("charge [pC]"), ax[1].set_ylabel("voltage error [LSB]"), ax[1].legend()
        ax[2].step(q, c["code_spice"], where="mid", label="SPICE")
        ax[2].plot(q, c["code_fit"], ".", label="fit")
        ax[2].plot(q, c["code_twin"], "x", ms=4, label="twin")
        ax[2].set_xlabel("charge [pC]"), ax[2].set_ylabel("code"), ax[2].legend()
        fig.suptitle(f"{name}: {r['opamp_kind']} + {r['adc_kind']}")
        fig.tight_layout()
        p = out / f"periphery_{name}.png"
        save_figure(fig, p, dpi=110), plt.close(fig)
        paths.append(str(p))
    mc = results.get("monte_carlo", [])
    if mc:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for k, r in enumerate(mc):
            lab = f"sigma={r['d2d_sigma']:g}, stuck={r['stuck_frac']:g}, vos={r['opamp_offset_sigma_v']:g}"
            ax[0].hist(np.asarray(r["per_run_rms"]) * 100, bins=20, alpha=0.5, label=lab, color=f"C{k}")
            ax[1].plot(np.asarray(r["abs_errors_sample"]) * 100, np.linspace(0, 1, len(r["abs_errors_sample"])),
                       color=f"C{k}", label=lab)
        ax[0].axvline(mc[0]["wire_only"] * 100, color="k", ls=":", label="wire only")
        ax[0].set_xlabel("per-run RMS error [% of largest ideal current]"), ax[0].set_ylabel("runs")
        ax[1].set_xlabel("|error| [% of largest ideal current]"), ax[1].set_ylabel("CDF")
        ax[0].legend(fontsize=7), ax[1].legend(fontsize=7)
        ax[0].set_title(f"MVM Monte Carlo {mc[0]['rows']}x{mc[0]['cols']}, r={mc[0]['r_wire']:g} ohm")
        fig.tight_layout()
        p = out / "monte_carlo.png"
        save_figure(fig, p, dpi=110), plt.close(fig)
        paths.append(str(p))
    return paths


def fit_all(out_dir, *, devices=None, pulses: int = 40, seeds=(0, 1, 2, 3), holdout_seeds=(100, 101),
            mc_size: int = 32, mc_r_wire: float = 1.0, mc_runs: int = 50, mc_sigmas=(0.0, 0.05, 0.1, 0.2),
            mc_stuck_frac: float = 0.0, mc_offset_sigma_v: float = 0.0, spice_runs: int = 1,
            engine=None, progress=None) -> dict:
    """Every fit (devices of the registry, both integrators with a ramp converter and with the
    ideal quantiser, a Monte Carlo sweep over sigma), written to ``out_dir/fits.json`` and PNGs; returns the dict (``json``, ``pngs``).
    ``progress(msg)`` is called before each block if given."""
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    res: dict = {"devices": {}, "periphery": {}, "monte_carlo": []}
    for name in devices or device_names():
        say(f"device {name}")
        res["devices"][name] = fit_device_steps(name, pulses=pulses, seeds=seeds,
                                                holdout_seeds=holdout_seeds, engine=engine)
    for name, integ in periphery_configs().items():   # ramp converter, and the ideal quantiser of the
        for suffix, adc in (("", None), ("_ideal_adc", QuantizerParams())):   # default PeripheryConfig
            say(f"periphery {name}{suffix}")
            res["periphery"][name + suffix] = fit_periphery(integ, adc, engine=engine)
    for k, s in enumerate(mc_sigmas):
        say(f"monte carlo sigma={s:g}")
        var = Variation(d2d_sigma=s, stuck_frac=mc_stuck_frac if s > 0 else 0.0,
                        opamp_offset_sigma_v=mc_offset_sigma_v if s > 0 else 0.0)
        res["monte_carlo"].append(monte_carlo_mvm(mc_size, mc_r_wire, var, runs=mc_runs, seed=0,
                                                  spice_runs=spice_runs if k == len(mc_sigmas) - 1 else 0,
                                                  engine=engine))
    res["pngs"] = plot_fits(res, out)
    res["json"] = str(save_json(res, out / "fits.json"))
    return res


def report_markdown(res: dict) -> str:
    """The tables of a :func:`fit_all` result as Markdown (errors against held-out SPICE)."""
    out = ["## Device step tables", "",
           "Trajectory error on held-out seeds against SPICE, % of the conductance range.", "",
           "| device | table RMSE | table max | twin RMSE | twin max | 1-step table | 1-step twin | spread ratio |",
           "|---|---|---|---|---|---|---|---|"]
    for name, r in res["devices"].items():
        e, o = r["error"], r["one_step_rmse_frac"]
        out.append(f"| {name} | {100 * e['step_table']['rmse_frac']:.4f} | {100 * e['step_table']['max_frac']:.4f} | "
                   f"{100 * e['twin']['rmse_frac']:.4f} | {100 * e['twin']['max_frac']:.4f} | "
                   f"{100 * o['step_table']:.4f} | {100 * o['twin']:.4f} | {r['spread_ratio']:.2f} |")
    out += ["", "## Integrator + ADC transfer", "",
            "Held-out sweep points; fitted model vs the uncalibrated twin, against SPICE.", "",
            "| op-amp | gain error | offset [mV] | rails [V] | v RMS / max [LSB], fit | twin | "
            "codes RMS / max [LSB], fit | twin |", "|---|---|---|---|---|---|---|---|"]
    for name, r in res["periphery"].items():
        i, f, t = r["integrator"], r["error"]["fit"], r["error"]["twin"]
        out.append(f"| {name} | {100 * i['gain_error']:+.2f} % | {1e3 * i['offset_v']:+.2f} | "
                   f"{i['sat_lo_v']:+.3f} / {i['sat_hi_v']:+.3f} | {f['v_rms_lsb']:.3f} / {f['v_max_lsb']:.3f} | "
                   f"{t['v_rms_lsb']:.3f} / {t['v_max_lsb']:.3f} | {f['code_rms_lsb']:.3f} / {f['code_max_lsb']:.0f} | "
                   f"{t['code_rms_lsb']:.3f} / {t['code_max_lsb']:.0f} |")
    out += ["", "## Monte Carlo of MVM error", "",
            "% of the largest ideal column current; *spice - fast*: sampled instances re-read in ngspice.", "",
            "| sigma | stuck | op-amp offset [V] | RMS mean | RMS std | RMS p95 | abs p95 | wires only | spice - fast |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in res["monte_carlo"]:
        chk = f"{max(c['max_abs_diff_frac'] for c in r['spice_checks']):.1e}" if r["spice_checks"] else "-"
        out.append(f"| {r['d2d_sigma']:g} | {r['stuck_frac']:g} | {r['opamp_offset_sigma_v']:g} | "
                   f"{100 * r['rms']['mean']:.3f} | {100 * r['rms']['std']:.3f} | {100 * r['rms']['p95']:.3f} | "
                   f"{100 * r['abs_p95']:.3f} | {100 * r['wire_only']:.3f} | {chk} |")
    return "\n".join(out)


@dataclass(frozen=True)
class BlockFitSettings:
    """How many SPICE runs the block fits take (:func:`fit_all`'s sizes of the work)."""

    pulses: int = 40
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    holdout_seeds: tuple[int, ...] = (100, 101)
    mc_runs: int = 50

    def record(self) -> dict:
        """What a folder's ``blocks/settings.json`` holds: these settings and :data:`FITS_VERSION`."""
        return {"fits_version": FITS_VERSION, **{k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in asdict(self).items()}}


def calibrate_blocks(out: Path, settings: BlockFitSettings = BlockFitSettings(), *, engine=None,
                     progress=None) -> tuple[dict, bool]:
    """The block part of ``xbar calibrate``: fit everything into ``out/blocks/fits.json``, or
    reuse the fits already there when ``out/blocks/settings.json`` records the same settings
    and fits version. Returns the fits and whether they were reused."""
    done = out / "blocks" / "settings.json"
    fits = out / "blocks" / "fits.json"
    want = settings.record()
    if done.exists() and fits.exists():
        try:
            same = json.loads(done.read_text()) == want
        except (OSError, json.JSONDecodeError):
            same = False
        if same:
            try:
                return load_json(fits), True
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                warnings.warn(f"{fits} cannot be read ({type(exc).__name__}: {str(exc)[:120]}): fitting the blocks "
                              "again", RuntimeWarning, stacklevel=2)
    res = fit_all(out / "blocks", engine=engine or SubprocessEngine(), progress=progress, pulses=settings.pulses,
                  seeds=settings.seeds, holdout_seeds=settings.holdout_seeds, mc_runs=settings.mc_runs)
    atomic_json(done, want)
    return res, False
