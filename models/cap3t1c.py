"""3T1C capacitor cell at transistor level (BSIM3 level 8, cards from models.mosfet).

Layer: models (leaf).

Schematic (ports ``p n up dn vdd``; ground is node 0; state = capacitor voltage V_C on ``s``)::

              vdd
               |
        up --o| Mpu (PMOS, pull-up)          p
               |                             |
               s ------+------------- gate| Mrd (NMOS read FET, triode)
               |       |       |             |
        dn ---| Mpd   = C     Rleak          n
               |       |       |
               0       0       0

A pulse on ``up`` (vdd -> vdd - v_up) charges C through the saturated PMOS; a pulse on ``dn``
(0 -> v_dn) discharges it through the NMOS: dV_C = +-I(V_C) t_eff / C per pulse. The two pump
currents differ and depend on V_C (channel-length modulation, body effect, short pulses' edge
charge), so the up/down asymmetry comes out of the circuit, not from a parameter. The read FET
in triode gives g ~ k'(W/L)(V_C - V_T); Rleak (and the FETs' off current) makes V_C decay.

Pulse convention for the benches and the twin: a signed amplitude per slot; a positive one is
an ``up`` pulse, a negative one a ``dn`` pulse, the magnitude given as a fraction of full drive
(``v_write`` = 1.0 means full: v_up on ``up``, v_dn on ``dn``; 0.5 is a half-selected drive,
whose gate overdrive sits below threshold). Half-select immunity is therefore approximate here
(subthreshold current): the twin treats |amplitude| < 0.75 as no pulse; the residual is stated
by the tests.

Numpy twin (behavioural, fitted to the circuit; constants in Cap3T1CParams): per full pulse
V_C += I_up(V_C) t_eff / C_eff or -= I_dn(V_C) t_eff / C_eff, with I_up, I_dn quadratic fits of
DC sweeps of the pump FETs at the pulse gate levels, t_eff = width + 2 rise rho (rho: the
edge-charge ratio from a DC gate sweep), then RC leakage over the slot. Read: I = v G(V_C) +
v^2 H(V_C) (cubic fits of the read FET for |v| <= v_read). :meth:`Cap3T1C.fitted` regenerates these constants
from the DC benches of :func:`netlists.benches.cap3t1c_fit_benches`.

Initial state: write ``.ic v(x<inst>.s)=V_C`` and run ``.tran`` WITHOUT ``uic`` (the operating
point then holds V_C while supplies and gates come up). With ``uic`` the FETs' gate charge
shares with C at t = 0 and kicks V_C by some 10 mV.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace

import numpy as np

from models.device import BenchDrive, DeviceModel
from models.pulse import MASK_BITS, PulseShape
from models.spice_text import fmt
from models.errors import ParameterError, ShapeError, check_positive
from models.mosfet import NMOS_180, PMOS_180, MosfetCard


@dataclass(frozen=True)
class Cap3T1CParams:
    """3T1C cell (Li et al., VLSI 2018; Ambrogio et al., Nature 558:60, 2018), generic 180 nm.

    Attributes
    ----------
    c_store : float
        Storage capacitor [F].
    r_leak : float
        Leakage resistance across C [ohm] (RC = retention time constant).
    vdd : float
        Supply [V].
    v_up : float
        Pull-up gate swing below vdd during an up pulse [V].
    v_dn : float
        Pull-down gate level during a dn pulse [V].
    w_pu, l_pu, w_pd, l_pd, w_rd, l_rd : float
        Widths and lengths of pull-up, pull-down and read FETs [m].
    v_read : float
        Read drain-source voltage [V].
    vc_min, vc_max : float
        Useful V_C range [V] (read FET on, pumps saturated).
    i_up, i_dn : tuple of float
        Fitted pump currents [A] as polynomials in V_C (highest power first, np.polyval).
    rho_up, rho_dn : float
        Edge-charge ratios [-]: int_0^1 I(u V_gate) du / I(V_gate).
    c_extra : float
        Fitted extra capacitance on the storage node (FET gate/junction caps) [F].
    g_read, h_read : tuple of float
        Fitted read coefficients: I = v polyval(g_read, V_C) + v^2 polyval(h_read, V_C) [A].
    """

    c_store: float = 100e-15
    r_leak: float = 1e10
    vdd: float = 1.8
    v_up: float = 0.72
    v_dn: float = 0.57
    w_pu: float = 0.22e-6
    l_pu: float = 2e-6
    w_pd: float = 0.22e-6
    l_pd: float = 2e-6
    w_rd: float = 0.22e-6
    l_rd: float = 1e-6
    v_read: float = 0.1
    vc_min: float = 0.6
    vc_max: float = 1.2
    i_up: tuple[float, ...] = (0.0, 0.0, 2e-8)
    i_dn: tuple[float, ...] = (0.0, 0.0, 2e-8)
    rho_up: float = 0.1
    rho_dn: float = 0.1
    c_extra: float = 0.0
    g_read: tuple[float, ...] = (0.0, 0.0, 1e-5, -4e-6)
    h_read: tuple[float, ...] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for f in ("c_store", "r_leak", "vdd", "v_up", "v_dn", "w_pu", "l_pu", "w_pd", "l_pd",
                  "w_rd", "l_rd", "v_read", "vc_max"):
            check_positive(f, getattr(self, f))
        check_positive("c_extra", self.c_extra, allow_zero=True)
        check_positive("vc_min", self.vc_min, allow_zero=True)
        check_positive("rho_up", self.rho_up, allow_zero=True)
        check_positive("rho_dn", self.rho_dn, allow_zero=True)
        if self.vc_min >= self.vc_max or self.vc_max >= self.vdd:
            raise ParameterError("need 0 <= vc_min < vc_max < vdd")
        for f in ("i_up", "i_dn", "g_read", "h_read"):
            if not all(np.isfinite(getattr(self, f))):
                raise ParameterError(f"{f} must be finite")


#: Fitted to ngspice 46 with the generic180 cards (see ``Cap3T1C.fitted``).
PRESET = replace(Cap3T1CParams(), 
                 i_up=(-2.026680430178743e-11, -3.136639281375534e-10, 2.2982127728632155e-08), 
                 i_dn=(-2.0146434953934166e-11, 9.815699505592857e-10, 2.1369769544988335e-08), 
                 rho_up=0.07476328440305324, 
                 rho_dn=0.06934411399841306, 
                 g_read=(-1.3780793371122705e-05, 3.1988122630550496e-05, 1.8125782894050536e-06, -8.22761349203376e-06), 
                 h_read=(-0.000158340802669406, 0.00046001432898205944, -0.00043139277726126816, 0.00011414676227682908))


def _phases(s, counts, rmask, cmask, pop, polarity, coefs, gains, decay, k):  # pragma: no cover - compiled
    """In place, sub-phase after sub-phase: each cell gets its pulses (V_C += gain polyval(coef,
    V_C), then a slot's decay), then decays through the slots it sits idle in that phase; a phase
    lasts its largest count of slots, up where ``polarity`` is > 0, dn where < 0 (row 0 of
    ``coefs`` and entry 0 of ``gains`` are the up pulse's, 1 the dn pulse's). The pulses come as
    ``counts`` (phases, cells; whole numbers of any real type) or, where ``rmask`` has phases,
    as bit masks: cell (i, j) of a (rows, cols) array (``s`` row-major) gets
    ``pop[rmask[ph, i] & cmask[ph, j]]`` pulses, and a row without any only decays. ``k`` (rows,
    cols; (1, cells) for counts) is work. Returns the slots of all phases and the pulses, or
    (-1, 0) (``s`` then part-way: the caller's copy to drop) if a count is negative or not whole."""
    masks = rmask.shape[0] > 0
    R, C = k.shape
    m = coefs.shape[1]
    total = 0
    pulses = 0
    for ph in range(rmask.shape[0] if masks else counts.shape[0]):
        top = 0
        for i in range(R):
            ri = rmask[ph, i] if masks else 1
            if ri == 0:
                continue
            for j in range(C):
                if masks:
                    n_ij = pop[ri & cmask[ph, j]]
                else:
                    v = counts[ph, j]
                    n_ij = int(v)
                    if n_ij != v or n_ij < 0:   # also NaN: never equal
                        return -1, 0
                k[i, j] = n_ij
                pulses += n_ij
                if n_ij > top:
                    top = n_ij
        n = top
        if n == 0 or polarity[ph] == 0:
            continue
        total += n
        sel = 0 if polarity[ph] > 0 else 1
        gain = gains[sel]
        idle = np.empty(n + 1)              # decay ** e, the same numbers as computing it per cell
        for e in range(n + 1):
            idle[e] = decay ** e
        for i in range(R):
            if masks and rmask[ph, i] == 0:
                for j in range(C):
                    s[i * C + j] *= idle[n]
                continue
            for j in range(C):
                x = s[i * C + j]
                n_ij = k[i, j]
                for _ in range(n_ij):
                    y = 0.0
                    for t in range(m):
                        y = y * x + coefs[sel, t]
                    x = (x + gain * y) * decay
                if n_ij < n:
                    x *= idle[n - n_ij]
                s[i * C + j] = x
    return total, pulses


_NO_MASKS = np.zeros((0, 0), np.int64)


@functools.cache
def _phase_kernel():
    """:func:`_phases` compiled by numba (cached on disk), or None where numba is missing or
    ``XBAR_NO_NUMBA`` is set (then the numpy loop of :meth:`Cap3T1C.apply_counts` runs)."""
    if os.environ.get("XBAR_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None
    fn = numba.njit(cache=True, nogil=True)(_phases)
    for dtype in (np.float32, np.float64, np.int32, np.int64):   # counts' types (float32: from BLAS)
        fn(np.zeros(1), np.zeros((1, 1), dtype), _NO_MASKS, _NO_MASKS, np.zeros(1, np.int64), np.ones(1, np.int64),
           np.zeros((2, 1)), np.zeros(2), 1.0, np.zeros((1, 1), np.int64))
    return fn


@functools.cache
def _popcounts(bits: int) -> np.ndarray:
    return np.array([bin(v).count("1") for v in range(1 << bits)], np.int64)


class Cap3T1C(DeviceModel):
    """3T1C cell at transistor level; state = V_C [V]."""

    name = "cap3t1c"
    ports = ("p", "n", "up", "dn", "vdd")
    v_write = 1.0
    v_threshold = 0.75

    def __init__(self, params: Cap3T1CParams | None = None, nmos: MosfetCard = NMOS_180,
                 pmos: MosfetCard = PMOS_180):
        self.params = params or PRESET
        self.nmos, self.pmos = nmos, pmos
        self.v_read = self.params.v_read

    @property
    def state_range(self) -> tuple[float, float]:
        return self.params.vc_min, self.params.vc_max

    @property
    def c_eff(self) -> float:
        return self.params.c_store + self.params.c_extra

    # -- SPICE --------------------------------------------------------------------------------
    def model_cards(self) -> str:
        return "\n".join([self.nmos.to_spice(), self.pmos.to_spice()])

    def subckt(self, *, live_current: bool = True) -> str:
        p = self.params
        return "\n".join([
            f".subckt {self.subckt_name} p n up dn vdd params: s0={fmt(p.vc_min)}",
            f"Mpu s up vdd vdd {self.pmos.name} W={fmt(p.w_pu)} L={fmt(p.l_pu)}",
            f"Mpd s dn 0 0 {self.nmos.name} W={fmt(p.w_pd)} L={fmt(p.l_pd)}",
            f"Mrd p s n 0 {self.nmos.name} W={fmt(p.w_rd)} L={fmt(p.l_rd)}",
            f"Cs s 0 {fmt(p.c_store)} IC={{s0}}",
            f"Rl s 0 {fmt(p.r_leak)}",
            ".ends"])

    def instance_params(self, state, variation=None, noise=None) -> dict[str, np.ndarray]:
        return {"s0": np.atleast_1d(np.asarray(state, float))}

    def bench_ports(self, kind: str) -> dict:
        """Write: an ``up`` pulse pulls the PMOS gate from vdd to ``vdd - a v_up`` (a > 0), a
        ``dn`` pulse lifts the NMOS gate to ``|a| v_dn`` (a < 0), the read FET held at
        ``v_read``; read: the channel swept, both pumps off."""
        super().bench_ports(kind)
        p = self.params
        if kind == "read":
            return {"p": BenchDrive(knots=False), "n": 0.0, "up": p.vdd, "dn": 0.0, "vdd": p.vdd}
        return {"p": p.v_read, "n": 0.0,
                "up": BenchDrive(scale=-p.v_up, base=p.vdd, only=1, knots=False),
                "dn": BenchDrive(scale=-p.v_dn, only=-1, knots=False), "vdd": p.vdd}

    def bench_initial_state(self) -> str:
        # .ic, not uic: the operating point holds V_C while the supplies and gate levels come
        # up, so the FETs' gate charge does not share with C at t = 0 (uic kicks V_C by ~12 mV)
        return "ic"

    def fitted(self, vc_grid, pumps: dict, gates: dict, read: dict) -> "Cap3T1C":
        """A model whose twin constants are fitted to DC sweeps of the cell's transistors.

        ``pumps``: ``vc`` [V] swept, ``i_c`` and ``i_c2`` [A] (the currents into the source
        holding node ``c`` and into the 0 V source carrying the pull-down current away from
        it); ``gates``: ``u`` (gate-drive fraction) with ``i_c``, ``i_c2``; ``read``: ``vd``
        [V] and ``i_s`` (one drain-source current array per V_C of ``vc_grid``). The benches
        are :func:`netlists.benches.cap3t1c_fit_benches`."""
        p = self.params
        # node c: the PMOS delivers I_up; the 0 V source carries I_dn = -i_c2 away from c; the
        # source holding c takes the rest: I_up = I_dn + i_c.
        vc = np.asarray(pumps["vc"])
        i_dn = -np.asarray(pumps["i_c2"])
        i_up = i_dn + np.asarray(pumps["i_c"])
        iu_fit, id_fit = np.polyfit(vc, i_up, 2), np.polyfit(vc, i_dn, 2)
        u = np.asarray(gates["u"])
        gd = -np.asarray(gates["i_c2"])
        gu = gd + np.asarray(gates["i_c"])
        rho_up = float(np.trapezoid(gu, u) / gu[-1])
        rho_dn = float(np.trapezoid(gd, u) / gd[-1])
        vd = np.asarray(read["vd"])
        vcs = np.asarray(vc_grid, float)
        G, H = [], []
        for k in range(len(vcs)):
            ids = np.asarray(read["i_s"][k])  # drain -> source current enters the source's 0 V source at +
            mask = np.abs(vd) <= p.v_read * 1.0001
            c = np.polyfit(vd[mask], ids[mask], 2)
            G.append(c[1]); H.append(c[0])
        g_fit = np.polyfit(vcs, G, 3)
        h_fit = np.polyfit(vcs, H, 3)
        return Cap3T1C(replace(p, i_up=tuple(map(float, iu_fit)), i_dn=tuple(map(float, id_fit)),
                               rho_up=rho_up, rho_dn=rho_dn, g_read=tuple(map(float, g_fit)),
                               h_read=tuple(map(float, h_fit))), self.nmos, self.pmos)

    # -- numpy twin ---------------------------------------------------------------------------
    def pump_currents(self, state) -> tuple[np.ndarray, np.ndarray]:
        """(I_up, I_dn) [A] at V_C = state during a full pulse (fitted)."""
        v = np.asarray(state, float)
        return np.polyval(self.params.i_up, v), np.polyval(self.params.i_dn, v)

    def current(self, state, v) -> np.ndarray:
        p = self.params
        s = np.asarray(state, float)
        v = np.asarray(v, float)
        return v * np.polyval(p.g_read, s) + v * v * np.polyval(p.h_read, s)

    def to_conductance(self, state) -> np.ndarray:
        return self.current(state, self.params.v_read) / self.params.v_read

    def from_conductance(self, g) -> np.ndarray:
        grid = np.linspace(self.params.vc_min, self.params.vc_max, 2001)
        gg = self.to_conductance(grid)
        return np.interp(np.asarray(g, float), gg, grid)

    def leak(self, state, t) -> np.ndarray:
        """V_C after ``t`` [s] without pulses: RC decay (FET off currents neglected)."""
        return np.asarray(state, float) * np.exp(-np.asarray(t, float) / (self.params.r_leak * self.c_eff))

    def apply_counts(self, state, counts, shape: PulseShape, variation=None, noise=None, *,
                     polarity: int = +1) -> np.ndarray:
        """State after ``counts`` full-selected pulses per cell, slot after slot as
        :meth:`DeviceModel.apply_counts` (a cell with fewer pulses than the most leaks through the
        remaining slots), at the cost of the pulses only: one compiled pass over the cells where
        numba is there, else a numpy loop over slots on the cells still pulsing; a cell's idle
        slots are one decay (RC decay composes). The same numbers, to rounding."""
        if variation is not None or noise is not None:
            return super().apply_counts(state, counts, shape, variation, noise, polarity=polarity)
        s = np.atleast_1d(np.asarray(state, float)).copy()
        c = np.broadcast_to(np.asarray(counts, int), s.shape).ravel()
        n = int(c.max(initial=0))
        if n == 0:
            return s
        flat = s.ravel()
        p = self.params
        if abs(polarity * self.v_write) < self.v_threshold:
            raise ParameterError(f"a full pulse ({polarity * self.v_write:g} of v_write) is below the threshold")
        if _phase_kernel() is not None:    # one compiled pass over the cells: each its own pulses, then its leak
            out, _ = self.apply_phases(flat, c[None, :], np.array([polarity]), shape)
            return out.reshape(s.shape)
        up = polarity > 0                  # :meth:`step` for one polarity: V_C += +-I(V_C) t_eff / C, then leak
        coef = p.i_up if up else p.i_dn
        t_eff = shape.width + 2 * shape.rise * (p.rho_up if up else p.rho_dn)
        gain = (1.0 if up else -1.0) * t_eff / self.c_eff
        decay = float(np.exp(-shape.period / (p.r_leak * self.c_eff)))
        idx = np.flatnonzero(c > 0)
        idx = idx[np.argsort(-c[idx], kind="stable")]     # most pulses first: slot k pulses a prefix
        sub, cs = flat[idx], c[idx]
        live = idx.size - np.searchsorted(cs[::-1], np.arange(n), side="right")   # cells with > k pulses
        for k in range(n):
            x = sub[:int(live[k])]
            x += gain * np.polyval(coef, x)
            x *= decay
        flat[idx] = sub
        return self.leak(flat, (n - c) * shape.period).reshape(s.shape)

    def apply_phases(self, state, counts, polarity, shape: PulseShape) -> tuple[np.ndarray, int]:
        """State after the sub-phases of an update, one after the other, and the slots they took:
        ``counts`` (phases, cells) holds each phase's pulses per cell (whole numbers >= 0, any
        real type: float32 counts come straight from a BLAS product), ``polarity`` (phases,)
        their direction (+1 up, -1 dn), and a phase lasts as many slots as its largest count (a
        phase without pulses takes none). The same numbers as :meth:`apply_counts` phase by
        phase, in one compiled pass where numba is there."""
        s = np.atleast_1d(np.asarray(state, float)).copy()
        counts, polarity = np.asarray(counts), np.asarray(polarity)
        if counts.ndim != 2 or counts.shape[1] != s.size or polarity.shape != (counts.shape[0],):
            raise ShapeError(f"counts must be (phases, {s.size}) and polarity (phases,), got {counts.shape} and "
                             f"{polarity.shape}")
        if abs(self.v_write) < self.v_threshold:
            raise ParameterError(f"a full pulse ({self.v_write:g} V) is below the threshold")
        kernel = _phase_kernel()
        flat = s.ravel()
        bad = ParameterError("pulse counts must be whole numbers >= 0")
        if kernel is None:
            if counts.size and not (np.all(counts >= 0) and np.array_equal(counts, np.floor(counts))):
                raise bad
            total = 0
            for c, pol in zip(counts.astype(np.int64), polarity):
                if c.any() and pol:
                    total += int(c.max())
                    flat = self.apply_counts(flat, c, shape, polarity=1 if pol > 0 else -1)
            return flat.reshape(s.shape), total
        if counts.dtype not in (np.float32, np.float64, np.int32, np.int64):
            counts = counts.astype(np.float64 if counts.dtype.kind == "f" else np.int64)
        total, _ = kernel(flat, np.ascontiguousarray(counts), _NO_MASKS, _NO_MASKS, np.zeros(1, np.int64),
                          np.sign(polarity).astype(np.int64), *self._pulse_terms(shape),
                          np.empty((1, flat.size), np.int64))
        if total < 0:
            raise bad
        return flat.reshape(s.shape), int(total)

    def _pulse_terms(self, shape: PulseShape) -> tuple[np.ndarray, np.ndarray, float]:
        """The compiled update's pump polynomials (up, dn), gains per pulse and slot decay."""
        p, c = self.params, self.c_eff
        gains = np.array([shape.width + 2 * shape.rise * p.rho_up, -(shape.width + 2 * shape.rise * p.rho_dn)]) / c
        return np.array([p.i_up, p.i_dn], float), gains, float(np.exp(-shape.period / (p.r_leak * c)))

    def apply_masks(self, state, row_masks, col_masks, polarity, shape: PulseShape) -> tuple[np.ndarray, int, int]:
        """:meth:`apply_phases` of an array's cells (rows, cols) with each phase's pulses as bit
        masks (:func:`cosim.write.pulses.coincidence_masks`): cell (i, j) gets popcount(row_masks[ph, i]
        AND col_masks[ph, j]) pulses. Returns the state, the slots and the pulses; the same numbers
        as :meth:`apply_phases` of the counts, without forming them where numba is there."""
        s = np.array(state, float)
        rm, cm, pol = (np.asarray(a) for a in (row_masks, col_masks, polarity))
        if s.ndim != 2 or rm.shape != (len(pol), s.shape[0]) or cm.shape != (len(pol), s.shape[1]):
            raise ShapeError(f"state (rows, cols) {s.shape} needs row masks (phases, rows) and column masks "
                             f"(phases, cols) with one polarity per phase, got {rm.shape}, {cm.shape}, {pol.shape}")
        if rm.dtype.kind not in "iu" or cm.dtype.kind not in "iu" or min(rm.min(initial=0), cm.min(initial=0)) < 0 \
                or max(rm.max(initial=0), cm.max(initial=0)) >= 1 << MASK_BITS:
            raise ParameterError(f"pulse masks must be integers in [0, 2^{MASK_BITS}): {MASK_BITS} slots at most")
        top = int(max(rm.max(initial=0), cm.max(initial=0)))
        pop = _popcounts(max(top.bit_length(), 1))
        kernel = _phase_kernel()
        if kernel is None or abs(self.v_write) < self.v_threshold or not len(pol):
            counts = pop[rm[:, :, None] & cm[:, None, :]].reshape(len(pol), s.size)
            out, slots = self.apply_phases(s.ravel(), counts, pol, shape)
            return out.reshape(s.shape), slots, int(counts.sum())
        flat = s.ravel()
        slots, pulses = kernel(flat, np.zeros((0, 0)), rm.astype(np.int64), cm.astype(np.int64), pop,
                               np.sign(pol).astype(np.int64), *self._pulse_terms(shape), np.empty(s.shape, np.int64))
        return flat.reshape(s.shape), int(slots), int(pulses)

    def step(self, state, amplitude, shape: PulseShape, variation=None, noise=None) -> np.ndarray:
        p = self.params
        s = np.asarray(state, float)
        a = np.asarray(amplitude, float)
        if a.shape == s.shape and s.ndim:   # pump currents of the pulsed cells only: updates are sparse
            on = (a >= self.v_threshold) | (a <= -self.v_threshold)
            if not on.all():
                out = self.leak(s, shape.period)       # an idle cell only leaks (the same numbers)
                out[on] = self.step(s[on], a[on], shape)
                return out
        iu, idn = self.pump_currents(s)
        up = (a >= self.v_threshold) * iu * (shape.width + 2 * shape.rise * p.rho_up)
        dn = (a <= -self.v_threshold) * idn * (shape.width + 2 * shape.rise * p.rho_dn)
        s = s + (up - dn) / self.c_eff
        return self.leak(s, shape.period)
