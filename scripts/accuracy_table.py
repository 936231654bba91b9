"""Accuracy table: the MLP on scikit-learn's digits, per backend and device, one run each.

    python scripts/accuracy_table.py                 # the default rows (about 15 minutes)
    python scripts/accuracy_table.py --only fast-reads-1ohm-pcm-pair
    python scripts/accuracy_table.py --only calibrated-reads-1ohm-pcm-pair --calibration cal/calibration.json

Rows marked *calibrated* use the fits of ``xbar calibrate`` (``--calibration``, default
``xbar-out/calibrate/calibration.json``): the cheap IR-drop model as the read backend, the
integrator/ADC transfer fitted to ngspice in the chain's fast reads, the device step table in
the fast updates.

Every row trains the same 64-32-10 network with the same seed and schedule, beside its software
baseline (the same initial weights and mini-batches in float), and reports test accuracy and
how many test predictions agree with the software run. Writes a Markdown table and JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cosim.calibrate.bundle import load_calibration
from cosim.train.data import load_digits_split
from cosim.train.layers import LayerConfig
from cosim.sim.files import publish
from cosim.train.loop import TrainConfig, train
from models.pulse import PulseShape
from netlists.readchain import PeripheryConfig

# name: (reads, update, device, r_wire [ohm], epochs[, options]); options: cell ("pair" or
# "2pcm3t1c"), periphery (True: reads through the default read chain with 8-bit DACs and ADCs),
# calibration (True: LayerConfig.calibration; with periphery, the chain's fitted transfer),
# device_table (True: the device's step table from the calibration's block fits), autorange (the
# chain sized for the whole worst case, full_scale 1, each tile picking its gain from that many
# binary capacitor steps: LayerConfig.chain_autorange), sensing ("pairs": each differential pair's
# difference on one integrator, PeripheryConfig.sensing).
ROWS = {
    "ideal-reads-ideal-device": ("ideal", "ideal", None, 0.0, 10),
    "spice-reads-ideal-device": ("spice", "ideal", None, 0.0, 10),
    "fast-reads-1ohm-ideal-device": ("fast", "ideal", None, 1.0, 10),
    "fast-reads-1ohm-linear": ("fast", "fast", "linear", 1.0, 10),
    "fast-reads-1ohm-pcm-pair": ("fast", "fast", "pcm", 1.0, 10),
    "fast-reads-1ohm-rram": ("fast", "fast", "rram", 1.0, 10),
    "fast-reads-1ohm-2pcm3t1c": ("fast", "fast", "pcm", 1.0, 10, {"cell": "2pcm3t1c"}),
    "chain-reads-1ohm-ideal-device": ("fast", "ideal", None, 1.0, 10, {"periphery": True}),
    "chain-reads-1ohm-pcm-pair": ("fast", "fast", "pcm", 1.0, 10, {"periphery": True}),
    "chain-reads-1ohm-2pcm3t1c": ("fast", "fast", "pcm", 1.0, 10, {"cell": "2pcm3t1c", "periphery": True}),
    "autorange-chain-reads-1ohm-pcm-pair": ("fast", "fast", "pcm", 1.0, 10, {"periphery": True, "autorange": 8}),
    "autorange-chain-reads-1ohm-2pcm3t1c": ("fast", "fast", "pcm", 1.0, 10,
                                            {"cell": "2pcm3t1c", "periphery": True, "autorange": 8}),
    "autorange-paired-chain-reads-1ohm-pcm-pair": ("fast", "fast", "pcm", 1.0, 10,
                                                   {"periphery": True, "autorange": 8, "sensing": "pairs"}),
    "autorange-paired-chain-reads-1ohm-2pcm3t1c": ("fast", "fast", "pcm", 1.0, 10,
                                                   {"cell": "2pcm3t1c", "periphery": True, "autorange": 8,
                                                    "sensing": "pairs"}),
    "calibrated-reads-1ohm-pcm-pair": ("calibrated", "fast", "pcm", 1.0, 10, {"calibration": True}),
    "fitted-chain-reads-1ohm-pcm-pair": ("fast", "fast", "pcm", 1.0, 10, {"periphery": True, "calibration": True}),
    "fast-reads-1ohm-pcm-step-table": ("fast", "fast", "pcm", 1.0, 10, {"device_table": True}),
    "fast-reads-1ohm-rram-step-table": ("fast", "fast", "rram", 1.0, 10, {"device_table": True}),
}


def chain_config(autorange: int = 0, sensing: str = "lines") -> PeripheryConfig:
    """The read chain of the table: 8-bit PWM DACs, macro op-amp integrators sized per tile so
    that 30 % of the worst-case charge fills the ADC (autoranging: all of it, the gain steps
    find the range), ideal 8-bit ADCs; ``sensing`` of the differential pairs."""
    return PeripheryConfig(full_scale=1.0 if autorange else 0.3, sensing=sensing)


def run(name: str, out: Path, seed: int, calibration: Path) -> dict:
    reads, update, device, r, epochs, *opt = ROWS[name]
    opt = opt[0] if opt else {}
    cal = None
    if opt.get("calibration") or opt.get("device_table"):
        if not calibration.exists():
            raise SystemExit(f"row {name} needs the fits of `xbar calibrate`: {calibration} does not exist "
                             "(run `xbar calibrate`, or pass --calibration)")
        cal = load_calibration(calibration)
    autorange = opt.get("autorange", 0)
    periphery = chain_config(autorange, opt.get("sensing", "lines")) if opt.get("periphery") else None
    fitted = bool(opt.get("calibration"))
    layer = LayerConfig(r_wire=r, periphery=periphery, calibration=cal.ir if fitted else None,
                        periphery_fit=cal.periphery_fit(periphery) if fitted and periphery else None,
                        chain_autorange=autorange)
    cfg = TrainConfig(epochs=epochs, forward=reads, backward=reads, update=update, device=device or "pcm",
                      layer=layer, seed=seed, unit_cell=opt.get("cell", "pair"),
                      device_table=cal.step_table(device, PulseShape()) if opt.get("device_table") else None)
    t0 = time.perf_counter()
    m = train(cfg, load_digits_split(), out / name, progress=False, resume=True)
    f = m["final"]
    kind = opt.get("cell", "pair") if device else "ideal"
    reads_txt = reads + (" + fitted chain" if opt.get("periphery") and opt.get("calibration") else
                         " + autoranging chain" if autorange else " + chain" if opt.get("periphery") else "")
    reads_txt += " (paired)" if opt.get("sensing") == "pairs" else ""
    update_txt = update + (" (step table)" if opt.get("device_table") else "")
    return {"run": name, "reads": reads_txt, "update": update_txt,
            "device": device or "ideal", "cell": kind, "r_wire": r,
            "epochs": epochs, "test_accuracy": f["test_accuracy"], "software_test_accuracy": f["software_test_accuracy"],
            "same_predictions": f["same_predictions"], "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(ROWS), help="run only these rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="xbar-out/accuracy")
    ap.add_argument("--calibration", default="xbar-out/calibrate/calibration.json",
                    help="calibration.json of `xbar calibrate` for the calibrated rows")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.only or list(ROWS):
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows.append(run(name, out, args.seed, Path(args.calibration)))
    lines = ["| run | reads | update | device | cell | wire [ohm] | epochs | test acc. | software | same predictions "
             "| time [s] |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['reads']} | {r['update']} | {r['device']} | {r['cell']} | {r['r_wire']:g} | "
                     f"{r['epochs']} | "
                     f"{100 * r['test_accuracy']:.1f} % | {100 * r['software_test_accuracy']:.1f} % | "
                     f"{100 * r['same_predictions']:.1f} % | {r['seconds']:.0f} |")
    text = "\n".join(lines)
    publish(out, "accuracy", text, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
