"""Periphery transfer fit: charge -> integrator voltage -> ADC code of one read chain, fitted to SPICE.

Layer: cosim. Imports ``models`` and ``cosim``; scipy only inside the fit (``import cosim``
stays cheap).

``fit_periphery(integ, adc)``
    One transient of ``2 points - 1`` diagonal cells sweeps the column charge across and
    beyond full scale (PWM codes, fixed cell conductance); an ADC sweep gives its transition
    levels. Fitted model (:class:`PeripheryFit`)::

        x     = q / q_fs                                       (q_fs = c_int (v_hi - v_lo) / 2)
        u     = v0 + k1 x + k2 x^2 + k3 x^3                    [V]
        w     = lo + knee_lo softplus((u - lo) / knee_lo)      (soft rail at lo)
        v_int = w - knee_hi softplus((w - hi) / knee_hi)       (soft rail at hi)
        code  = clip(floor(polyval(count, v_int)), 0, 2^n - 1) (count: cubic through the
                                                                ADC transition levels)

    Even sweep points are fitted, odd ones held out; errors of the fit and of the
    uncalibrated twin (:func:`cosim.characterize.periphery.read_twin`) against SPICE are given in LSB
    and as a fraction of the ADC range. The fit holds for the swept column load (``g_total``
    in the result): the gain depends on it through ``G / (2 pi GBW)``.

:func:`periphery_configs` gives the two integrator configurations (macro and two-stage op-amp).

In a read chain: :func:`load_periphery_fit` (a ``fits.json`` or the ``calibration.json`` that
points at one) picks the fit for a :class:`cosim.read.readchain.PeripheryConfig` (same op-amp kind,
converter kind, code count and range), and ``ReadChain(..., fit=...)`` uses it for fast reads.
The chain may have another capacitor, column loads and integration time than the sweep:
:meth:`PeripheryFit.chain_voltage` moves the charge axis by the ratio of effective capacitances
``C (1 + 1/a0) + G tau`` (``tau`` measured by the fit itself) and the offset charge
``G v_os t_int``; the voltage-domain parts (rails, curvature, converter) are kept.

JSON: each result is a JSON-able dict (lists and floats only); it is
``fits.json["periphery"][name]`` of :func:`cosim.calibrate.blocks.fit_all`, whose ``"fit"`` entry is
:meth:`PeripheryFit.to_dict` (the dataclass fields; :meth:`PeripheryFit.from_dict` reads it
back).

Measured (held-out sweep points, 8-bit ramp ADC, 10 pF): macro op-amp: fit 0.21 LSB RMS on
the integrator voltage (twin 1.08; rails), codes 0.35 LSB RMS (twin 0.91); two-stage op-amp:
fit 0.13 LSB (twin 10.2: its swing estimate is 0.15 V short of SPICE's rails, gain 1 % off),
codes 0.47 LSB RMS (twin 4.1, max 8).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from models.errors import ParameterError, check_positive

__all__ = ["PeripheryFit", "periphery_configs", "fit_periphery", "select_periphery_fit", "load_periphery_fit",
           "circuit_record"]


def _softplus(x):
    return np.logaddexp(0.0, x)


@dataclass(frozen=True)
class PeripheryFit:
    """Fitted charge -> integrator voltage -> code transfer (see the module docstring).

    Attributes
    ----------
    q_fs : float
        Charge normalisation [C] (``x = q / q_fs``).
    poly : tuple of 4 floats
        ``(v0, k1, k2, k3)`` [V]: offset and the cubic in ``x``.
    sat_lo, sat_hi : float
        Output rails [V].
    knee_lo, knee_hi : float
        Softness of each rail [V].
    count : tuple of float
        ADC count polynomial in ``v`` (highest power first, ``np.polyval``).
    n_codes : int
        ADC codes.
    g_total : float
        Column load of the sweep the fit holds for [S].
    code_lo, code_hi : int
        Lowest and highest code the chain reached in SPICE (a converter inside a read can
        lose its last code to the read timing); -1 means ``0`` / ``n_codes - 1``.
    c_int : float
        Integration capacitor of the fitted chain [F] (0: not recorded; fits written before
        this field take it from the result's ``"c_int"``, see :func:`select_periphery_fit`).
    t_int : float
        Integration time of the fitted chain (reset release to conversion start) [s].
    adc_range : (float, float) or None
        ``(v_lo, v_hi)`` of the converter the count polynomial was taken on [V] (None: not
        recorded).
    """

    q_fs: float
    poly: tuple[float, float, float, float]
    sat_lo: float
    sat_hi: float
    knee_lo: float
    knee_hi: float
    count: tuple[float, ...]
    n_codes: int
    g_total: float = 0.0
    code_lo: int = -1
    code_hi: int = -1
    c_int: float = 0.0
    t_int: float = 0.0
    adc_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_positive("q_fs", self.q_fs)
        check_positive("c_int", self.c_int, allow_zero=True)
        check_positive("t_int", self.t_int, allow_zero=True)
        if self.adc_range is not None and not (len(self.adc_range) == 2 and self.adc_range[0] < self.adc_range[1]):
            raise ParameterError(f"adc_range must be (v_lo, v_hi) with v_lo < v_hi, got {self.adc_range!r}")
        check_positive("knee_lo", self.knee_lo)
        check_positive("knee_hi", self.knee_hi)
        check_positive("g_total", self.g_total, allow_zero=True)
        if len(self.poly) != 4 or not np.all(np.isfinite(self.poly)):
            raise ParameterError("poly must be 4 finite numbers (v0, k1, k2, k3)")
        if not self.sat_lo < self.sat_hi:
            raise ParameterError(f"sat_lo ({self.sat_lo:g} V) must be below sat_hi ({self.sat_hi:g} V)")
        if not isinstance(self.n_codes, (int, np.integer)) or self.n_codes < 2:
            raise ParameterError(f"n_codes must be an integer >= 2, got {self.n_codes!r}")

    @property
    def gain(self) -> float:
        """Small-signal gain at q = 0 [V/C] (negative: the integrator inverts)."""
        return self.poly[1] / self.q_fs

    @property
    def offset(self) -> float:
        """Output at q = 0 before the rails [V]."""
        return self.poly[0]

    def voltage(self, q) -> np.ndarray:
        """Integrator output [V] for column charge ``q`` [C]."""
        return _clip_model(np.asarray(self.poly), self.sat_lo, self.sat_hi, self.knee_lo,
                           self.knee_hi, np.asarray(q, float) / self.q_fs)

    def codes_from_voltage(self, v) -> np.ndarray:
        c = np.floor(np.polyval(self.count, np.asarray(v, float)))
        lo = 0 if self.code_lo < 0 else self.code_lo
        hi = self.n_codes - 1 if self.code_hi < 0 else self.code_hi
        return np.clip(c, lo, hi).astype(np.int64)

    def codes(self, q) -> np.ndarray:
        """ADC codes for column charge ``q`` [C]."""
        return self.codes_from_voltage(self.voltage(q))

    def lag_time(self, integ) -> float:
        """Column-load term of the effective capacitance, ``tau`` in ``C_eff = C (1 + 1/a0) + G tau``
        [s], as the fit measured it: ``(-q_fs / k1 - c_int (1 + 1/a0)) / g_total`` (the fitted
        small-signal gain against the capacitor alone). A single-pole op-amp gives
        ``1 / (2 pi GBW)``; the default two-stage op-amp measures 3.7 ns against its macro-model's
        4.2 ns. A fit without column load (``g_total`` 0) falls back to ``1 / (2 pi GBW)`` of
        ``integ``'s macro-model; never negative."""
        m = integ.macro
        if self.g_total <= 0:
            return 1 / (2 * np.pi * m.gbw)
        return max(0.0, (-self.q_fs / self.poly[1] - self.c_int * (1 + 1 / m.a0)) / self.g_total)

    def chain_charge(self, q, integ, g_total=None, t_int: float | None = None) -> np.ndarray:
        """The charge [C] that, fed to this fit, gives the output of a chain sized differently.

        The fit holds for its own capacitor ``c_int``, column load ``g_total`` and integration
        time ``t_int``. A chain with the same op-amp and converter but integrator ``integ``,
        column loads ``g_total`` [S] (broadcast with ``q``) and integration time ``t_int`` [s]
        differs, to first order (:func:`models.integrator.charge_to_voltage`), by its
        effective capacitance ``C_eff(C, G) = C (1 + 1/a0) + G tau`` and by the charge its
        column loses to the op-amp offset, ``G v_os t_int``. Matching the linear parts::

            q_fit = (q - G v_os t_int) C_eff(c_fit, G_fit) / C_eff(C, G) + G_fit v_os t_fit

        with ``C_eff(c_fit, G_fit) = -q_fs / k1`` (the fit's own gain) and ``tau`` from it
        (:meth:`lag_time`); ``a0`` and ``v_os`` are the op-amp's macro-model's
        (:attr:`IntegratorParams.macro`). At the fit's own sizing this is the identity. The
        rails, the curvature and the converter stay in volts: only the charge axis moves. The
        leak of finite ``a0`` (``G moment / (C_eff a0)``) enters only through the fitted gain.

        Measured against ngspice (two-stage op-amp, fit at 10 pF and 235 uS, chains at 3 and
        20 pF with ~200 uS columns; tests/test_periphery_fit_read.py): this rule beats both the
        twin and ``q_fs`` scaled by the bare capacitor ratio, which misses the ``G tau`` term
        (9 % of the fit's 10 pF, 25 % of 3 pF) and is off by up to 15 LSB. The op-amp must
        still deliver the column current (``G v_read``): the default two-stage op-amp sinks
        ~100 uA, beyond which SPICE slews and no charge-domain model holds.
        ``g_total`` None: the fit's own load; ``t_int`` None: the fit's own time.
        """
        if self.c_int <= 0:
            raise ParameterError("this periphery fit does not record its integrator capacitor (c_int); load it "
                                 "with select_periphery_fit / load_periphery_fit, which fill it from the fit result")
        if not self.poly[1] < 0:
            raise ParameterError(f"the fitted gain k1 = {self.poly[1]:g} V is not negative: "
                                 "not an inverting integrator")
        m = integ.macro
        g = self.g_total if g_total is None else np.asarray(g_total, float)
        t = self.t_int if t_int is None else float(t_int)
        c_fit = -self.q_fs / self.poly[1]
        c_chain = integ.c_int * (1 + 1 / m.a0) + g * self.lag_time(integ)
        return (np.asarray(q, float) - g * m.v_os * t) * (c_fit / c_chain) + self.g_total * m.v_os * self.t_int

    def chain_voltage(self, q, integ, g_total=None, t_int: float | None = None) -> np.ndarray:
        """Integrator output [V] of a chain with integrator ``integ``, column loads ``g_total``
        and integration time ``t_int`` for charge ``q`` [C] (:meth:`chain_charge`)."""
        return self.voltage(self.chain_charge(q, integ, g_total, t_int))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["poly"], d["count"] = list(map(float, self.poly)), list(map(float, self.count))
        d["adc_range"] = None if self.adc_range is None else list(map(float, self.adc_range))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PeripheryFit":
        rng = d.get("adc_range")
        return cls(**{**d, "poly": tuple(d["poly"]), "count": tuple(d["count"]), "n_codes": int(d["n_codes"]),
                      "code_lo": int(d.get("code_lo", -1)), "code_hi": int(d.get("code_hi", -1)),
                      "adc_range": None if rng is None else tuple(map(float, rng))})


def _clip_model(poly, lo, hi, klo, khi, x):
    u = poly[0] + poly[1] * x + poly[2] * x ** 2 + poly[3] * x ** 3
    w = lo + klo * _softplus((u - lo) / klo)
    return w - khi * _softplus((w - hi) / khi)


def periphery_configs() -> dict:
    """The two integrator configurations of issue 6: macro and two-stage transistor op-amp."""
    from models.integrator import IntegratorParams
    from models.opamp import MacroOpAmpParams, TwoStageOpAmpParams
    return {"macro": IntegratorParams(opamp=MacroOpAmpParams()),
            "two_stage": IntegratorParams(opamp=TwoStageOpAmpParams())}


def _fit_integrator(x, v, lsb):
    from scipy.optimize import least_squares
    inner = np.abs(x) <= 0.5
    k1, v0 = np.polyfit(x[inner], v[inner], 1)
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo
    theta0 = np.array([v0, k1, 0.0, 0.0, lo, hi, 0.01 * span, 0.01 * span])

    def resid(t):
        return (_clip_model(t[:4], t[4], t[5], t[6], t[7], x) - v) / lsb

    lb = [-np.inf] * 4 + [lo - 0.2 * span, hi - 0.2 * span, 1e-6, 1e-6]
    ub = [np.inf] * 4 + [lo + 0.2 * span, hi + 0.2 * span, 0.2 * span, 0.2 * span]
    sol = least_squares(resid, theta0, bounds=(lb, ub), x_scale="jac")
    return sol.x


def _errs_v_code(v_pred, c_pred, v_ref, c_ref, lsb, n_codes) -> dict:
    dv = (np.asarray(v_pred) - np.asarray(v_ref)) / lsb
    dc = np.asarray(c_pred, float) - np.asarray(c_ref, float)
    return {"v_rms_lsb": float(np.sqrt(np.mean(dv ** 2))), "v_max_lsb": float(np.abs(dv).max()),
            "v_rms_fs": float(np.sqrt(np.mean(dv ** 2)) / n_codes),
            "code_rms_lsb": float(np.sqrt(np.mean(dc ** 2))), "code_max_lsb": float(np.abs(dc).max()),
            "code_rms_fs": float(np.sqrt(np.mean(dc ** 2)) / n_codes)}


def fit_periphery(integ=None, adc=None, dac=None, *, points: int = 41, overdrive: float = 1.5,
                  adc_points_per_code: int = 2, engine=None) -> dict:
    """Fit the charge -> voltage -> code transfer of one integrator + ADC chain to SPICE.

    Parameters
    ----------
    integ : IntegratorParams, optional
        Default: macro op-amp, 10 pF.
    adc : QuantizerParams or RampAdcParams, optional
        Default: ``RampAdcParams()``.
    dac : DacParams, optional
        Input encoding of the sweep (default 8-bit signed PWM, 1 ns LSB).
    points : int
        Fitted sweep points (as many minus one are held out, between them).
    overdrive : float
        The sweep spans ``+- overdrive q_fs`` (beyond full scale: the rails get fitted).
    adc_points_per_code : int
        Density of the ADC-only sweep that gives the transition levels.

    Returns
    -------
    dict
        ``fit`` (:meth:`PeripheryFit.to_dict`), ``integrator`` (gain [V/C], ideal gain
        ``-1/c_int``, gain_error, offset [V], rails [V]), ``adc`` (INL/DNL, offset, gain error
        of the SPICE converter), ``error`` = ``{"fit", "twin"}`` on the held-out points and
        ``error_train`` on the fitted ones (``v_*_lsb``: integrator voltage, ``code_*_lsb``:
        codes; ``*_fs``: fraction of the ADC range), ``curves`` (for plots), ``spice_s``.
    """
    from cosim.sim.engine import SubprocessEngine
    from cosim.characterize.periphery import read_timing, read_twin, run_adc_sweep, run_read
    from models.adc import RampAdcParams, inl_dnl, transition_levels
    from models.dac import DacParams, volt_seconds
    from models.integrator import IntegratorParams

    engine = engine or SubprocessEngine()
    integ = integ or IntegratorParams()
    adc = adc or RampAdcParams()
    dac = dac or DacParams(encoding="pwm", bits=8, t_lsb=1e-9)
    if points < 9:
        raise ParameterError(f"points must be >= 9, got {points}")
    check_positive("overdrive", overdrive)
    t0 = time.perf_counter()
    n = 2 * points - 1
    codes = np.rint(np.linspace(-dac.max_code, dac.max_code, n)).astype(np.int64)
    q_fs = integ.c_int * (adc.v_hi - adc.v_lo) / 2
    g = overdrive * q_fs / float(volt_seconds(np.array([dac.max_code]), dac)[0])
    G = np.diag(np.full(n, g))
    sp = run_read(codes, G, dac, integ, adc, engine=engine)
    tw = read_twin(codes, G, dac, integ, adc)
    q = tw["q"]
    v_sp, c_sp = sp["v_read_end"], sp["codes"]

    # ADC: transition levels of the converter alone
    lsb = adc.lsb
    # grid points half a step off the nominal transitions: the midpoint estimate of a level
    # is then unbiased (on the nominal levels it reads a quarter step low)
    h = lsb / adc_points_per_code
    v_grid = adc.v_lo - 4 * lsb + (np.arange(adc_points_per_code * (adc.n_codes + 8)) + 0.5) * h
    sw = run_adc_sweep(v_grid, adc, engine=engine)
    lv = transition_levels(v_grid, sw["codes"], adc.n_codes)
    lin = inl_dnl(lv, adc)
    ok = np.isfinite(lv)
    count = np.polyfit(lv[ok], np.arange(1, adc.n_codes)[ok], 3)

    fit_i, test_i = np.arange(0, n, 2), np.arange(1, n, 2)
    x = q / q_fs
    th = _fit_integrator(x[fit_i], v_sp[fit_i], lsb)
    # Inside a read the converter is timed differently from the bench above, and the
    # integrator output keeps moving during the conversion (its virtual ground is off by
    # v_os + v_out/a0, so the cells keep delivering charge). Correct the count by a + b v
    # (each within +-0.6 LSB over the range) chosen to reproduce the fitted points' codes,
    # and take the code range the chain reached.
    v_tr, c_tr = v_sp[fit_i], c_sp[fit_i]
    inner = (c_tr > c_tr.min()) & (c_tr < c_tr.max())
    v_half = (adc.v_hi - adc.v_lo) / 2
    base_count = np.polyval(count, v_tr[inner])
    best = (np.inf, 0.0, 0.0)
    for a in np.linspace(-0.6, 0.6, 49):
        for b in np.linspace(-0.6, 0.6, 49):
            miss = np.sum(np.floor(base_count + a + b * v_tr[inner] / v_half) != c_tr[inner])
            best = min(best, (miss + 1e-3 * (abs(a) + abs(b)), a, b))
    shift = (float(best[1]), float(best[2]))
    count[-1] += shift[0]
    count[-2] += shift[1] / v_half
    tm = read_timing(dac, adc)
    fit = PeripheryFit(q_fs=q_fs, poly=tuple(map(float, th[:4])), sat_lo=float(th[4]), sat_hi=float(th[5]),
                       knee_lo=float(th[6]), knee_hi=float(th[7]), count=tuple(map(float, count)),
                       n_codes=adc.n_codes, g_total=g, code_lo=int(c_tr.min()), code_hi=int(c_tr.max()),
                       c_int=integ.c_int, t_int=tm.t_adc - tm.t_rst, adc_range=(adc.v_lo, adc.v_hi))
    v_fit, c_fit = fit.voltage(q), fit.codes(q)
    errors = {"fit": _errs_v_code(v_fit[test_i], c_fit[test_i], v_sp[test_i], c_sp[test_i], lsb, adc.n_codes),
              "twin": _errs_v_code(tw["v_out"][test_i], tw["codes"][test_i], v_sp[test_i], c_sp[test_i], lsb, adc.n_codes)}
    err_train = {"fit": _errs_v_code(v_fit[fit_i], c_fit[fit_i], v_sp[fit_i], c_sp[fit_i], lsb, adc.n_codes),
                 "twin": _errs_v_code(tw["v_out"][fit_i], tw["codes"][fit_i], v_sp[fit_i], c_sp[fit_i], lsb, adc.n_codes)}
    op = integ.opamp
    return {
        "opamp": op.name, "opamp_kind": type(op).__name__, "adc_kind": type(adc).__name__,
        "opamp_macro": asdict(integ.macro), "circuit": circuit_record(integ), "adc_params": {"bits": adc.bits, "v_lo": adc.v_lo, "v_hi": adc.v_hi},
        "c_int": integ.c_int, "g_cell": g, "t_int": tm.t_adc - tm.t_rst, "points": points,
        "overdrive": overdrive, "fit": fit.to_dict(),
        "integrator": {"gain_v_per_c": fit.gain, "gain_ideal_v_per_c": -1 / integ.c_int,
                       "gain_error": float(fit.gain * integ.c_int + 1), "offset_v": fit.offset,
                       "offset_lsb": fit.offset / lsb, "k2_v": fit.poly[2], "k3_v": fit.poly[3],
                       "sat_lo_v": fit.sat_lo, "sat_hi_v": fit.sat_hi},
        "adc": {"inl_max_lsb": lin["inl_max"], "dnl_max_lsb": lin["dnl_max"],
                "offset_lsb": lin.get("offset_lsb"), "gain_error": lin.get("gain_error"),
                "missing_codes": lin["missing_codes"], "chain_shift_lsb": shift,  # (a [LSB], b [LSB per half range])
                "chain_code_range": [fit.code_lo, fit.code_hi]},
        "error": errors, "error_train": err_train,
        "curves": {"q": q.tolist(), "v_spice": v_sp.tolist(), "v_fit": v_fit.tolist(),
                   "v_twin": tw["v_out"].tolist(), "code_spice": c_sp.tolist(),
                   "code_fit": c_fit.tolist(), "code_twin": tw["codes"].tolist(),
                   "held_out": test_i.tolist()},
        "spice_s": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------------------------
# Picking the fit for a read chain


def _adc_range_of(fit: PeripheryFit, entry: dict):
    if fit.adc_range is not None:
        return tuple(fit.adc_range)
    p = entry.get("adc_params")
    return (float(p["v_lo"]), float(p["v_hi"])) if isinstance(p, dict) and "v_lo" in p else None


def select_periphery_fit(fits: dict, cfg, *, source: str = "fits.json") -> PeripheryFit:
    """The :class:`PeripheryFit` of ``fits`` (a ``fits.json`` dict) that describes the chain ``cfg``.

    Parameters
    ----------
    fits : dict
        ``{"periphery": {name: fit_periphery(...)}, ...}`` (:func:`cosim.calibrate.blocks.fit_all`).
    cfg : cosim.read.readchain.PeripheryConfig
        The chain to read with the fit.
    source : str
        Where ``fits`` came from (for the error messages).

    A fit matches when its op-amp kind (macro-model or two-stage transistor op-amp), converter
    kind (ideal quantiser or ramp), code count and converter range are the chain's (for older
    fits without a recorded range: its count polynomial within 2 codes of the chain's first and
    last transitions), and its circuit is the chain's: every parameter of the op-amp (for a
    two-stage op-amp its sizing, bias and cards), the supplies and the reset switch's leak (for
    older fits without the record: the op-amp's macro-model ``a0``, ``gbw``, ``v_os``,
    ``headroom``). The first match is taken; none: a :class:`ParameterError` that lists why each
    fit was passed over. The capacitor, column load and integration time may differ:
    :meth:`PeripheryFit.chain_voltage` carries the fit over.
    """
    from models.opamp import TwoStageOpAmpParams
    per = fits.get("periphery") if isinstance(fits, dict) else None
    if not isinstance(per, dict) or not per:
        raise ParameterError(f"{source} holds no periphery fits (run `xbar calibrate`)")
    op_kind = type(cfg.integrator.opamp).__name__
    adc_kind = type(cfg.adc).__name__
    want = f"{'two-stage' if isinstance(cfg.integrator.opamp, TwoStageOpAmpParams) else 'macro'} op-amp " \
           f"({op_kind}), {adc_kind} with {cfg.adc.n_codes} codes"
    circuit = circuit_record(cfg.integrator)
    why = []
    for name, entry in per.items():
        if not isinstance(entry, dict) or "fit" not in entry:
            why.append(f"{name}: not a fit_periphery result")
            continue
        try:
            fit = PeripheryFit.from_dict(entry["fit"])
        except (KeyError, TypeError, ValueError, ParameterError) as exc:
            why.append(f"{name}: malformed fit ({type(exc).__name__}: {exc})")
            continue
        problem = _mismatch(fit, entry, cfg, op_kind, adc_kind, circuit)
        if problem:
            why.append(f"{name}: {problem}")
            continue
        if fit.c_int <= 0 or fit.t_int <= 0:   # fits written before these fields
            fit = replace(fit, c_int=float(entry.get("c_int", fit.c_int)), t_int=float(entry.get("t_int", fit.t_int)))
            if fit.c_int <= 0:
                why.append(f"{name}: records no integrator capacitor (c_int)")
                continue
        return fit
    raise ParameterError(f"no periphery fit in {source} matches the chain ({want}); passed over: {'; '.join(why)} "
                         "(refit with this chain's op-amp and converter: `xbar calibrate`, or cosim.calibrate.periphery)")


def circuit_record(integ) -> dict:
    """What a periphery fit holds for besides its capacitor: the op-amp's every parameter (name
    aside), the supplies and the reset switch's leak, JSON-normalised (recorded by
    :func:`fit_periphery`, compared by :func:`select_periphery_fit`)."""
    op = asdict(integ.opamp)
    op.pop("name", None)
    rec = {"opamp_kind": type(integ.opamp).__name__, "opamp": op, "vdd": integ.vdd, "vss": integ.vss,
           "g_off": integ.g_off}
    return json.loads(json.dumps(rec, default=str))


def adc_range_mismatch(rng, adc) -> str | None:
    """Why a fit taken on the converter range ``rng = (v_lo, v_hi)`` [V] does not hold for the
    converter ``adc`` (None: the ranges agree)."""
    lo, hi = adc.v_lo, adc.v_hi
    if abs(rng[0] - lo) > 1e-6 * (hi - lo) or abs(rng[1] - hi) > 1e-6 * (hi - lo):
        return f"taken on an ADC range of [{rng[0]:g}, {rng[1]:g}] V, the chain's ADC spans [{lo:g}, {hi:g}] V"
    return None


def _mismatch(fit: PeripheryFit, entry: dict, cfg, op_kind: str, adc_kind: str, circuit: dict) -> str | None:
    """Why ``entry`` does not describe the chain ``cfg`` (None: it does)."""
    if entry.get("opamp_kind") != op_kind or entry.get("adc_kind") != adc_kind or fit.n_codes != cfg.adc.n_codes:
        return f"{entry.get('opamp_kind')}, {entry.get('adc_kind')} with {fit.n_codes} codes"
    rng = _adc_range_of(fit, entry)
    lo, hi, lsb = cfg.adc.v_lo, cfg.adc.v_hi, cfg.adc.lsb
    if rng is not None:
        why = adc_range_mismatch(rng, cfg.adc)
        if why:
            return why
    else:
        ends = np.polyval(fit.count, np.array([lo + lsb, hi - lsb]))
        if np.abs(ends - [1, fit.n_codes - 1]).max() > 2:
            return (f"its ADC counts {ends[0]:.1f} and {ends[1]:.1f} at the chain's first and last transitions "
                    f"(expected 1 and {fit.n_codes - 1}): the ADC range [{lo:g}, {hi:g}] V differs from the fitted one")
    rec = entry.get("circuit")
    if isinstance(rec, dict):
        if rec != circuit:
            diff = sorted(k for k in set(rec) | set(circuit) if rec.get(k) != circuit.get(k))
            if "opamp" in diff and isinstance(rec.get("opamp"), dict):
                ro, co = rec["opamp"], circuit["opamp"]
                diff = [k for k in diff if k != "opamp"] + sorted(
                    f"opamp.{k}" for k in set(ro) | set(co) if ro.get(k) != co.get(k))
            return f"fitted on another circuit (differs in {', '.join(diff)})"
        return None
    mac = entry.get("opamp_macro")
    if isinstance(mac, dict):
        m = cfg.integrator.macro
        for k in ("a0", "gbw", "v_os", "headroom"):
            if k in mac and abs(float(mac[k]) - getattr(m, k)) > 1e-9 * max(1.0, abs(getattr(m, k))):
                return f"for an op-amp with {k}={float(mac[k]):g}, the chain's has {k}={getattr(m, k):g}"
    return None


def load_periphery_fit(path, cfg) -> PeripheryFit:
    """:func:`select_periphery_fit` on a file: a ``fits.json`` (``xbar calibrate``'s
    ``OUT/blocks/fits.json``) or a ``calibration.json`` whose ``"blocks"`` entry (relative to its
    folder) names one."""
    from cosim.calibrate.blocks import read_block_fits
    d, p = read_block_fits(path, "periphery")
    return select_periphery_fit(d, cfg, source=str(p))
