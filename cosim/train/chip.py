"""Chip export: a programmed network as standalone ngspice decks and a driver that runs it.

Layer: cosim.train. :func:`export_chip` takes the folder of ``xbar deploy`` (the conductances
right after programming) or of an in-situ ``xbar train`` run on PCM pairs (its checkpoint's
conductances) and writes, into a chip folder:

- one deck per array tile (``layer<k>_tile<r>_<c>.cir``): the wired array at its programmed
  conductances with its read chain (DACs, integrators, ADCs), rendered by
  :meth:`cosim.read.readchain.ReadChain.deck` from the circuit IR like every other deck. Its DAC
  sources sit between ``BEGIN DAC`` / ``END DAC`` comment lines and drive the first ``chunk``
  test images of that layer (the first layer's images; a later layer's inputs as the fast
  backend computed them), so ``ngspice -b`` runs each deck as it is;
- ``network.json``: per layer the tiles (deck, input and output ranges, driven nodes, the
  window length, the DAC waveform corners of every code, the ADC decode table), the column
  scales, the read voltage, the DAC bits and the activation;
- ``images.csv`` (label, inputs) and ``expected.csv`` (the fast backend's prediction and logits
  through the same read chain's numpy twin);
- ``run_network.py``: :mod:`cosim.train.chip_driver`, standalone;
- ``program.csv``: the write-verify program of every device (:func:`cosim.train.deploy.deploy`),
  copied from the deploy folder;
- ``README.md``: what is there and how to run it.
"""

from __future__ import annotations

import inspect
import json
import shutil
import time
from pathlib import Path

import numpy as np

from cosim.read.readchain import ReadChain
from cosim.write.mapping import MappingSpec
from cosim.sim.files import RunLock, atomic_json, atomic_path
from cosim.train import chip_driver
from cosim.train.data import Dataset
from cosim.train.deploy import DEPLOYED, PROGRAM_CSV, load_deployed
from cosim.train.layers import AnalogLayer, LayerConfig
from cosim.train.network import sigmoid
from models.dac import row_waveforms, to_codes
from models.errors import ParameterError
from netlists.readchain import PeripheryConfig, full_scale_time, window_dac

__all__ = ["export_chip", "CHIP_FORMAT"]

CHIP_FORMAT = 1


def _check_chain(pc: PeripheryConfig) -> None:
    if pc.dac.encoding == "bitserial":
        raise ParameterError("the chip export reads each image in one window: use a pwm or amplitude DAC, not "
                             "bitserial (its per-bit windows are combined digitally)")
    if not pc.exact_corners:
        raise ParameterError("the chip export writes DAC sources with breakpoints: set exact_corners to true")


def _marked(deck: str) -> str:
    """The deck with its DAC sources between the driver's BEGIN / END lines."""
    lines = deck.split("\n")
    a = next(i for i, s in enumerate(lines) if s.startswith("* PwlSources dac"))
    b = next(i for i in range(a + 1, len(lines)) if lines[i].startswith("* "))
    return "\n".join(lines[:a] + [chip_driver.BEGIN] + lines[a + 1:b] + [chip_driver.END] + lines[b:])


def _tile_record(layer: AnalogLayer, t, codes: np.ndarray, chunk: int, name: str) -> tuple[dict, str]:
    """One tile's entry of network.json and its deck (the first ``chunk`` images)."""
    chain: ReadChain = t.read_chain(layer.cfg).with_gain(t.gains.get(("main", False), 0))   # a trained gain step
    pc = chain.config
    first = np.zeros((chunk, codes.shape[1]), np.int64)
    m = min(chunk, codes.shape[0])
    first[:m] = codes[:m]
    windows = chain.drive_codes(first, False)[:, None, :]
    circ, _ = chain.circuit(windows)
    drive = circ.group("dac")
    dac = window_dac(pc.dac)
    corners = {}
    for c in range(-dac.max_code, dac.max_code + 1):
        if c:
            w = row_waveforms(np.array([c]), dac, t_start=chain.timing.t_pulses)[0][1:]
            corners[str(c)] = w.ravel().tolist()
    decode = chain.decode_charge(np.arange(1 << pc.adc.bits))
    record = {"deck": name, "inputs": [t.rows.start, t.rows.stop], "outputs": [t.cols.start, t.cols.stop],
              "drive_nodes": [circ.nodes.name(int(p)) for p in drive.p], "n_sense": chain.n_sense(False),
              "differential": chain.spec.cell == "diff" and not chain.paired(False),    # pairs subtracted digitally
              "window": chain.timing.t_end, "corners": corners,
              "decode_C": decode.tolist(), "t_fs": full_scale_time(pc.dac), "c_int_F": pc.integrator.c_int}
    return record, _marked(chain.deck(first))


def _network(run: Path, periphery: PeripheryConfig | None) -> tuple[list[AnalogLayer], str, PeripheryConfig]:
    """The layers of a deploy folder (right after programming) or of an in-situ trained pair run
    (its checkpoint's conductances and its layer configuration), behind ``periphery`` (default:
    the run's read chain, else the default chain); the device name; the chain."""
    if (run / DEPLOYED).exists() or not (run / "metrics.json").exists():
        dep = load_deployed(run)
        pc = periphery if periphery is not None else PeripheryConfig()
        dev = dep.device
        layers = dep.layers([(dev.to_conductance(sp), dev.to_conductance(sm)) for sp, sm in dep.states],
                            {"periphery": pc})
        return layers, dep.cfg.device, pc
    cfg = json.loads((run / "metrics.json").read_text())["config"]
    if cfg["unit_cell"] != "pair" or cfg["forward"] == "software":
        how = "in software" if cfg["forward"] == "software" else "on 2 PCM + 3T1C unit cells"
        raise ParameterError(f"{run} was trained {how}: its arrays do not hold its weights as conductance pairs; "
                             f"program them first: xbar deploy {run}")
    lay = cfg["layer"]
    if lay["mapping"]["per_column"]:
        raise ParameterError(f"{run} maps each column to its own scale (per_column); the export needs one "
                             "scale per layer")
    pc = periphery if periphery is not None else (
        PeripheryConfig.from_dict(lay["periphery"]) if lay["periphery"] else PeripheryConfig())
    # an autoranging run's chains keep the gain steps they trained with (its own chain only)
    ranged = periphery is None and lay["periphery"] and lay.get("chain_autorange", 0)
    lc = LayerConfig(mapping=MappingSpec(**lay["mapping"]), r_wire=lay["r_wire"], v_read=lay["v_read"],
                     max_rows=lay["max_rows"], max_cols=lay["max_cols"], bias=lay["bias"], periphery=pc,
                     chain_autorange=lay["chain_autorange"] if ranged else 0)
    layers = []
    with np.load(run / "checkpoint.npz", allow_pickle=False) as z:
        for k in range(len([f for f in z.files if f.startswith("gp")])):
            gp, gm = z[f"gp{k}"], z[f"gm{k}"]
            layer = AnalogLayer(np.zeros((gp.shape[0] - lay["bias"], gp.shape[1])), lc)
            layer.set_conductances(gp, gm)
            if ranged and f"gains{k}" in z.files:
                layer.set_range_state(z[f"gains{k}"])
                layer.adapt_gains = False
            layers.append(layer)
    return layers, cfg["device"], pc


def export_chip(run_dir: str | Path, out_dir: str | Path, data: Dataset, *, periphery: PeripheryConfig | None = None,
                images: int | None = None, chunk: int = 20, progress=None) -> dict:
    """Write the chip folder of the deployed network in ``run_dir`` (see the module docstring);
    ``images``: the first N test images (default all), ``chunk``: images per deck run."""
    layers, device, pc = _network(Path(run_dir), periphery)
    _check_chain(pc)
    if chunk < 1 or (images is not None and images < 1):
        raise ParameterError(f"chunk and images must be >= 1, got {chunk} and {images}")
    out = Path(out_dir)
    if out.resolve() == Path(run_dir).resolve():
        raise ParameterError(f"{out}: write the chip folder beside the deploy folder, not into it")
    n = len(data.y_test) if images is None else min(int(images), len(data.y_test))
    X, y = np.asarray(data.X_test[:n], float), np.asarray(data.y_test[:n])
    with RunLock(out, "export"):
        t0 = time.perf_counter()
        net_layers, h = [], X
        for k, layer in enumerate(layers):
            last = k == len(layers) - 1
            V, _ = layer.drive(layer.augment(h), False)
            codes = to_codes(V / layer.cfg.v_read, pc.dac.bits)
            tiles = []
            for t in layer.tiles:
                name = f"layer{k}_tile{t.rows.start}_{t.cols.start}.cir"
                record, deck = _tile_record(layer, t, codes[:, t.rows], chunk, name)
                with atomic_path(out / name) as tmp:
                    tmp.write_text(deck)
                tiles.append(record)
            net_layers.append({"n_in": layer.n_in, "n_out": layer.n_out, "bias": layer.cfg.bias,
                               "scale": layer.scale.tolist(), "v_read": layer.cfg.v_read, "dac_bits": pc.dac.bits,
                               "activation": "none" if last else "sigmoid", "tiles": tiles})
            z = layer.forward(h, "fast")
            h = z if last else sigmoid(z)
            if progress:
                progress(f"layer {k}: {len(tiles)} decks")
        pred = h.argmax(axis=1)
        _write_csvs(out, X, y, pred, h)
        net = {"format": CHIP_FORMAT, "chunk": chunk, "images": n, "device": device,
               "periphery": pc.to_dict(), "layers": net_layers}
        atomic_json(out / "network.json", net)
        with atomic_path(out / "run_network.py") as tmp:
            tmp.write_text(inspect.getsource(chip_driver))
        src = Path(run_dir) / PROGRAM_CSV
        if src.exists():
            with atomic_path(out / PROGRAM_CSV) as tmp:
                shutil.copyfile(src, tmp)
        summary = {"images": n, "decks": sum(len(L["tiles"]) for L in net_layers), "chunk": chunk,
                   "accuracy_fast": float((pred == y).mean()), "seconds": time.perf_counter() - t0}
        with atomic_path(out / "README.md") as tmp:
            tmp.write_text(_readme(net, summary))
    return summary


def _write_csvs(out: Path, X, y, pred, logits) -> None:
    head = "label," + ",".join(f"x{j}" for j in range(X.shape[1]))
    rows = [head] + [f"{int(label)}," + ",".join(f"{v:.17g}" for v in x) for label, x in zip(y, X)]
    with atomic_path(out / "images.csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    head = "image,prediction_fast," + ",".join(f"logit{j}" for j in range(logits.shape[1]))
    rows = [head] + [f"{i},{int(p)}," + ",".join(f"{v:.9g}" for v in z) for i, (p, z) in enumerate(zip(pred, logits))]
    with atomic_path(out / "expected.csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")


def _readme(net: dict, summary: dict) -> str:
    decks = "\n".join(f"- `{t['deck']}`: layer {k}, inputs {t['inputs'][0]}..{t['inputs'][1] - 1}, outputs "
                      f"{t['outputs'][0]}..{t['outputs'][1] - 1} ({t['n_sense']} integrators and ADCs, "
                      f"C_int = {t['c_int_F']:.3g} F)"
                      for k, L in enumerate(net["layers"]) for t in L["tiles"])
    dac = net["periphery"]["dac"]
    return f"""# A programmed network as ngspice decks

Written by `xbar export` (format {CHIP_FORMAT}): {len(net['layers'])} layers of {net['device']} conductance pairs,
{summary['decks']} array tiles, {summary['images']} test images. Fast backend accuracy through the same
read chain: {100 * summary['accuracy_fast']:.2f} %.

## Run one array

    ngspice -b {net['layers'][0]['tiles'][0]['deck']}

Each deck is the whole wired array at its programmed conductances with its read chain:
{dac['bits']}-bit {dac['encoding']} DACs at {dac['v_read']} V, one integrator and ADC per physical column
(`v(code<j>)`). It reads {net['chunk']} images, one window each (reset, integrate, convert); the
codes are valid at the end of each window. The DAC sources between `BEGIN DAC` and `END DAC`
are the only part that changes from read to read.

## Run the network

    python3 run_network.py --jobs 2          # needs Python 3, numpy and ngspice

Every read is a plain `ngspice -b` of a deck above with the DAC block for its images. Between
layers the driver does what the chip's digital side does: decode the ADC codes
(`decode_C` in network.json), add the row tiles' partial sums, apply the column scales and the
sigmoid, round the next layer's inputs to DAC codes. It compares its predictions with the fast
backend's (`expected.csv`) and writes `results.csv` and `results.json`. Finished reads are kept
in `work/`: an interrupted run resumes.

## Files

{decks}
- `network.json`: tiles, scales, DAC corner and ADC decode tables, the read-chain configuration.
- `images.csv`: label and inputs of each test image; `expected.csv`: the fast backend's
  prediction and logits.
- `program.csv` (when the deploy folder has it): the write-verify program of every device, one
  row per device and round (verify read, then the pulses and their polarity).
"""
