"""The integrator + ADC transfer of a read chain fitted to ngspice, as a fast model a read chain
uses: charge -> integrator voltage -> ADC code.

Layer: cosim.read. The fit itself is :func:`cosim.calibrate.periphery.fit_periphery`; this module
holds the fitted model (:class:`PeripheryFit`), carries it over to a chain sized differently
(:meth:`PeripheryFit.chain_voltage`) and picks, from a set of fits, the one that describes a
given chain (:func:`select_periphery_fit`). Model::

    x     = q / q_fs                                       (q_fs = c_int (v_hi - v_lo) / 2)
    u     = v0 + k1 x + k2 x^2 + k3 x^3                    [V]
    w     = lo + knee_lo softplus((u - lo) / knee_lo)      (soft rail at lo)
    v_int = w - knee_hi softplus((w - hi) / knee_hi)       (soft rail at hi)
    code  = clip(floor(polyval(count, v_int)), 0, 2^n - 1) (count: cubic through the
                                                            ADC transition levels)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import numpy as np

from models.errors import ParameterError, check_positive
from models.opamp import TwoStageOpAmpParams

__all__ = ["PeripheryFit", "select_periphery_fit", "circuit_record", "adc_range_mismatch", "transfer_curve",
           "check_chain_fit"]


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
        if isinstance(self.n_codes, bool) or not isinstance(self.n_codes, (int, np.integer)) or self.n_codes < 2:
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
        return transfer_curve(np.asarray(self.poly), self.sat_lo, self.sat_hi, self.knee_lo,
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
                                 "with select_periphery_fit, which fills it from the fit result")
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


def transfer_curve(poly, lo, hi, klo, khi, x):
    """The fitted integrator transfer: the cubic ``poly`` in ``x`` between soft rails ``lo`` and
    ``hi`` [V] of softness ``klo``, ``khi`` [V] (see the module docstring)."""
    u = poly[0] + poly[1] * x + poly[2] * x ** 2 + poly[3] * x ** 3
    w = lo + klo * _softplus((u - lo) / klo)
    return w - khi * _softplus((w - hi) / khi)


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
    cfg : netlists.readchain.PeripheryConfig
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


def check_chain_fit(fit, cfg):
    """``fit`` (a :class:`PeripheryFit` or None) checked against the chain config ``cfg`` it is to serve."""
    if fit is None:
        return None
    if not isinstance(fit, PeripheryFit):
        raise ParameterError(f"fit must be a PeripheryFit or None, got {type(fit).__name__}")
    a = cfg.adc
    if fit.n_codes != a.n_codes:
        raise ParameterError(f"the periphery fit has {fit.n_codes} ADC codes, the chain's ADC {a.n_codes}")
    why = adc_range_mismatch(fit.adc_range, a) if fit.adc_range is not None else None
    if why:
        raise ParameterError(f"the periphery fit was {why}")
    if fit.c_int <= 0:
        raise ParameterError("the periphery fit records no integrator capacitor (c_int): load it with "
                             "cosim.read.periphery_fit.select_periphery_fit")
    return fit
