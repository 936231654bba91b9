"""An aihwkit-style ``IOParameters`` dict from an IR-drop calibration (no aihwkit import).

Layer: cosim.calibrate.
"""

from __future__ import annotations

import numpy as np

from cosim.read.irmodel import MODEL_NAME, SCHEMA, VERSION, Calibration
from models.errors import ParameterError

__all__ = ["to_aihwkit"]


def to_aihwkit(cal: Calibration, *, r_wire: float | None = None, g_max: float | None = None,
               adc_bits: int | None = None, dac_bits: int | None = None) -> dict:
    """An aihwkit-style ``IOParameters`` dict where our quantities map cleanly (no aihwkit import).

    ``ir_drop_g_ratio`` is aihwkit's wire-to-device conductance ratio 1 / (r_wire g_max);
    ``ir_drop`` is its scale, set to the mean of our two fitted first-order coefficients (1 is
    physics). ``out_res`` / ``inp_res`` are 1 / (2^bits - 2) (aihwkit's convention for a
    symmetric converter; None: no converter, written as -1, aihwkit's "off"). ``out_noise`` is
    the held-out RMS error of the calibrated model over full scale (the part our model does not
    explain), unless the calibration carries a measured periphery value. aihwkit's own IR-drop
    model differs from ours (docs/ir-drop-model.md); the dict is a starting point, not an equivalence.
    """
    fit = cal.fit or {}
    r = r_wire if r_wire is not None else float(np.median(fit.get("r_wire", [1.0])))
    gm = g_max if g_max is not None else float(fit.get("g_range", [1e-6, 25e-6])[1])
    if r <= 0 or gm <= 0:
        raise ParameterError(f"r_wire and g_max must be > 0 for an IR-drop export, got {r} and {gm}")
    per = cal.periphery or {}
    adc = adc_bits if adc_bits is not None else per.get("adc_bits")
    dac = dac_bits if dac_bits is not None else per.get("dac_bits")
    cal_rmse = [row["cal_rmse"] for row in cal.errors if "cal_rmse" in row]
    out_noise = per.get("out_noise", float(np.mean(cal_rmse)) if cal_rmse else 0.0)

    def res(bits):
        return -1.0 if bits in (None, 0) else 1.0 / (2 ** int(bits) - 2)

    return {
        "_source": "xbar-cosim calibration (schema %s v%d)" % (SCHEMA, VERSION),
        "forward": {
            "ir_drop": float(np.mean(cal.model.a[:2])),
            "ir_drop_g_ratio": 1.0 / (r * gm),
            "out_noise": float(out_noise),
            "out_res": res(adc),
            "inp_res": res(dac),
            "inp_bound": 1.0,
            "out_bound": 1.0,
        },
        "xbar_cosim": {"model": MODEL_NAME, "coefficients": cal.model.to_dict(), "r_wire": r, "g_max": gm},
    }
