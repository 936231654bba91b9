"""IBM aihwkit ``IOParameters`` from an IR-drop calibration, in aihwkit's own units (no aihwkit import).

Layer: cosim.calibrate.

aihwkit 1.1 (its C++ tile, ``InferenceRPUConfig`` / ``SingleRPUConfig``) models IR drop in closed
form: for output i of a tile with n inputs, tile weights w (1 = one device at g_max) and prepared
inputs x (1 = full-scale input),

    a_i = n / g_ratio * sum_j |w_ij| |x_j|,     c_i = a_i (0.5 - 0.2 a_i + 0.05 a_i^2),
    y_i = sum_j w_ij x_j - ir_drop * c_i * sum_j w_ij x_j (1 - (1 - j/n)^2),

with ``g_ratio = ir_drop_g_ratio`` the wire-to-device conductance ratio 1 / (r_wire g_max) and
input j = 0 next to the ADC. It models only the summation (column) wire and scales with the
input amplitude; our arrays also drop voltage on the driven wire. :func:`to_aihwkit` keeps
``ir_drop_g_ratio`` physical and fits ``ir_drop`` (a scale aihwkit applies linearly) by least
squares to the exact solve of our topology, on arrays of the chosen tile shape and wire
resistance, so that the exported model is as close to the circuit as aihwkit's form allows; the
note beside the file gives the errors that remain and what aihwkit cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosim.read.irmodel import Calibration
from cosim.read.mvm import Crossbar
from models.errors import ParameterError
from netlists.crossbar import CrossbarSpec

__all__ = ["AihwkitExport", "to_aihwkit", "aihwkit_forward", "to_aihwkit_weights"]


@dataclass(frozen=True)
class AihwkitExport:
    """An export: ``params`` (flat: ``IOParameters(**params)``), the ``note`` to write beside it,
    and the ``errors`` measured (rmse / max over the largest exact current, per variant)."""

    params: dict
    note: str
    errors: dict


def aihwkit_forward(W: np.ndarray, x: np.ndarray, *, ir_drop: float, g_ratio: float) -> np.ndarray:
    """aihwkit 1.1's forward pass without noise, converters or bounds (its ``applyIrDrop``).

    W : (out, in) tile weights; x : (batch, in) prepared inputs; returns (batch, out)."""
    n = W.shape[1]
    y = x @ W.T
    if ir_drop <= 0:
        return y
    a = (n / g_ratio) * (np.abs(x) @ np.abs(W).T)
    c = a * (a * (0.05 * a - 0.2) + 0.5)
    j = np.arange(n)
    p = 1.0 - (1.0 - j / n) ** 2
    return y - ir_drop * c * ((x * p) @ W.T)


def to_aihwkit_weights(G: np.ndarray, V: np.ndarray, g_max: float, v_read: float) -> tuple[np.ndarray, np.ndarray]:
    """Our array (rows driven at the left, columns sensed after the last row) as an aihwkit tile:
    weights (cols, rows) and inputs (batch, rows), input j = our row rows-1-j (aihwkit's input 0 is
    next to the ADC). Outputs convert back as ``I = y * g_max * v_read``."""
    return G[::-1].T / g_max, V[:, ::-1] / v_read


def _res(bits: int | None) -> float:
    """aihwkit's converter resolution: a step as a fraction of the range (-1: no converter)."""
    if bits in (None, 0):
        return -1.0
    if int(bits) < 2:
        raise ParameterError(f"converter bits must be >= 2 for an export, got {bits}")
    return 1.0 / (2 ** int(bits) - 2)


def _rel(err: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    scale = float(np.abs(ref).max())
    return float(np.sqrt(np.mean(err ** 2)) / scale), float(np.abs(err).max() / scale)


def _cases(cal: Calibration, rows: int, cols: int, r_wire: float, g_lo: float, g_hi: float, states: int,
           batch: int, seed: int):
    """(W, x, I_exact, I_ours) per random state: conductances uniform in the calibrated range,
    inputs uniform in [0, v_read] scaled so the largest is full scale (aihwkit's default noise
    management divides by max |x|)."""
    rng = np.random.default_rng(seed)
    spec = CrossbarSpec(rows, cols, r_row=r_wire, r_col=r_wire, v_read=1.0)
    for _ in range(states):
        G = rng.uniform(g_lo, g_hi, (rows, cols))
        V = rng.uniform(0.0, 1.0, (batch, rows))
        V /= V.max(axis=1, keepdims=True)
        xb = Crossbar(spec, G)
        W, x = to_aihwkit_weights(G, V, g_hi, 1.0)
        yield W, x, xb.read(V, backend="fast"), cal.model.read(spec, G, V)


def to_aihwkit(cal: Calibration, *, r_wire: float, rows: int = 256, cols: int = 256,
               adc_bits: int | None = None, dac_bits: int | None = None, states: int = 3, batch: int = 64,
               seed: int = 0) -> AihwkitExport:
    """aihwkit 1.1 ``IOParameters`` keywords for tiles of ``rows`` x ``cols`` cells with
    ``r_wire`` [ohm] per segment on both wires, at the calibration's conductance range.

    - ``ir_drop_g_ratio`` = 1 / (r_wire g_max) (aihwkit's definition);
    - ``ir_drop``: least-squares fit to the exact solve of ``states`` random arrays;
    - ``out_bound`` = ``rows``: in aihwkit's output units (one device at g_max at full input),
      the largest output a tile can give, so no read is clipped and bound management stays idle;
    - ``out_res`` / ``inp_res`` = 1 / (2^bits - 2) of the range (-1: no converter);
    - ``inp_bound`` = 1 (full-scale input), ``out_noise`` = 0: our calibration has no measured
      read noise, and its model error is fixed, not random (it is in the note, not here).
    """
    for name, v in (("rows", rows), ("cols", cols)):
        if not isinstance(v, (int, np.integer)) or v < 2:
            raise ParameterError(f"{name} must be an integer >= 2, got {v!r}")
    if not np.isfinite(r_wire) or r_wire <= 0:
        raise ParameterError(f"r_wire must be a positive number of ohm, got {r_wire}")
    g_lo, g_hi = (float(g) for g in (cal.fit or {}).get("g_range", (1e-6, 25e-6)))
    g_ratio = 1.0 / (r_wire * g_hi)
    num = den = 0.0
    cases = list(_cases(cal, rows, cols, r_wire, g_lo, g_hi, states, batch, seed))
    for W, x, I, _ in cases:
        y0 = aihwkit_forward(W, x, ir_drop=0.0, g_ratio=g_ratio)
        d1 = y0 - aihwkit_forward(W, x, ir_drop=1.0, g_ratio=g_ratio)   # the correction at ir_drop = 1
        t = I / g_hi                                                     # exact, in aihwkit's units
        num += float(np.sum(d1 * (y0 - t)))
        den += float(np.sum(d1 * d1))
    ir_drop = num / den if den > 0 else 0.0
    errors = _export_errors(cases, g_hi, g_ratio, ir_drop)
    params = {"ir_drop": float(ir_drop), "ir_drop_g_ratio": float(g_ratio), "out_bound": float(rows),
              "out_res": _res(adc_bits), "inp_res": _res(dac_bits), "inp_bound": 1.0, "out_noise": 0.0}
    note = _note(cal, params, errors, rows=rows, cols=cols, r_wire=r_wire, g_lo=g_lo, g_hi=g_hi,
                 states=states, batch=batch)
    return AihwkitExport(params, note, errors)


def _export_errors(cases, g_max: float, g_ratio: float, ir_drop: float) -> dict:
    """rmse / max error of each variant against the exact solve, over all cases."""
    out: dict[str, list] = {"no IR-drop model": [], "aihwkit, ir_drop = 1 (physical)": [],
                            "aihwkit, ir_drop fitted (exported)": [], "xbar-cosim calibrated model": []}
    for W, x, I, ours in cases:
        for key, y in (("no IR-drop model", x @ W.T),
                       ("aihwkit, ir_drop = 1 (physical)", aihwkit_forward(W, x, ir_drop=1.0, g_ratio=g_ratio)),
                       ("aihwkit, ir_drop fitted (exported)", aihwkit_forward(W, x, ir_drop=ir_drop, g_ratio=g_ratio))):
            out[key].append(y * g_max - I)
        out["xbar-cosim calibrated model"].append(ours - I)
    ref = np.concatenate([c[2] for c in cases])
    return {k: _rel(np.concatenate(v), ref) for k, v in out.items()}


def _note(cal: Calibration, params: dict, errors: dict, *, rows, cols, r_wire, g_lo, g_hi, states, batch) -> str:
    err_rows = "\n".join(f"| {k} | {a:.2e} | {b:.2e} |" for k, (a, b) in errors.items())
    sizes = (cal.fit or {}).get("sizes")
    return f"""# aihwkit export of an xbar-cosim calibration

Load it with aihwkit 1.1 (tested with torch 2.10.0):

```python
import json
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters import IOParameters
cfg = InferenceRPUConfig()
cfg.forward = IOParameters(**json.load(open("THIS_FILE.json")))
cfg.mapping.max_input_size = {rows}    # the tile shape the export was fitted for
cfg.mapping.max_output_size = {cols}
```

## What the values mean (aihwkit's units)

- Tile: {rows} inputs (our rows) x {cols} outputs (our columns), {r_wire:g} ohm per wire segment on
  both wires, cells {g_lo * 1e6:g}-{g_hi * 1e6:g} uS.
- Weights: a tile weight of 1 is one cell at g_max = {g_hi * 1e6:g} uS; an input of 1 is the full-scale
  read voltage. aihwkit's input j is our row {rows}-1-j (its input 0 sits next to the ADC; our
  columns are sensed after the last row). Outputs convert back as I = y * g_max * v_read.
- `ir_drop_g_ratio` = {params['ir_drop_g_ratio']:.6g}: wire to device conductance, 1 / (r_wire g_max).
- `ir_drop` = {params['ir_drop']:.4g}: the scale of aihwkit's IR-drop term, fitted by least squares to the
  exact solve of our topology ({states} random arrays x {batch} inputs). 1 would be aihwkit's physics
  with the summation wire alone; the fit absorbs the driven wire's drop, which aihwkit has no term for.
- `out_bound` = {params['out_bound']:g}: the largest output of a {rows}-row tile (every cell at g_max, full
  input), so no read clips and bound management stays idle. aihwkit's default of 12 would clip
  these arrays' outputs and make bound management shrink the inputs, hiding the IR drop.
- `out_res` = {params['out_res']:.6g}, `inp_res` = {params['inp_res']:.6g}: converter steps as a fraction of
  the range (-1: no converter).
- `out_noise` = 0: the calibration holds no measured read noise. The model error below is a fixed
  function of the array state and inputs, not random noise, so it is not exported as noise.

## Errors against the exact solve (rmse / max error over the largest exact current)

| model | rmse | max |
|---|---|---|
{err_rows}

## What aihwkit cannot express (left out)

- The drop on the driven (input) wire: present only through the fitted `ir_drop` scale.
- Load that varies along a line: aihwkit's profile assumes uniformly loaded summation lines.
- Amplitude: aihwkit's correction scales with the input amplitude; in a linear circuit the relative
  drop does not. With aihwkit's default noise management (inputs divided by max |x|) the fit holds
  for inputs that reach full scale, as in these cases.
- Transposed (backward) reads: the export fills `forward` only; aihwkit's `backward` IOParameters
  has its own `ir_drop` (default 0), which the same values would set.
- Our fitted model (coefficients {cal.model.to_dict()}, fitted on sizes {sizes}): aihwkit cannot load it.
- The read chain (integrator and ADC transfer fitted to ngspice) and device programming models.
"""
