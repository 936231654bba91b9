"""Training at circuit fidelity: backpropagation whose reads and updates go through the arrays.

Layer: cosim.train. :func:`train` runs a multilayer perceptron (:mod:`cosim.train.network`) on
analog layers, with the forward read, the transposed backward read and the update each on its
chosen backend, and beside it a software network with the same seed, architecture, initial
weights and mini-batch schedule. It writes a checkpoint at the end of every epoch and every
``checkpoint_every`` mini-batches, at most every ``checkpoint_seconds``, and on SIGINT or
SIGTERM after the mini-batch under way (:mod:`cosim.train.stopping`); a killed run resumes
where it stopped and ends with the same result (every random draw derives from (seed, epoch,
batch), not from a running state).

``unit_cell`` picks the weight's hardware: ``"pair"`` (a differential pair of ``device``,
updated by ``update``) or ``"2pcm3t1c"`` (the IBM 2018 unit cell of :mod:`cosim.train.unitcell`:
updates go to the 3T1C cells, every ``transfer_every`` mini-batches the 3T1C part is transferred
into the PCM pair and its polarity inverted; capacitor states, polarities and transfer counts
are part of the checkpoint).

``TrainConfig()`` is what ``xbar train`` runs with no options: the library and the command line
share one set of defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from cosim.calibrate.bundle import content_digest
from cosim.calibrate.montecarlo import MonteCarloRuns, check_accuracy_run, monte_carlo_accuracy
from cosim.sim.files import RunLock, atomic_json, atomic_path, atomic_write
from cosim.train.audit import AuditConfig, Auditor, calibration_bound, read_audit_log, summarize_audit
from cosim.train.data import Dataset
from cosim.train.layers import READ_BACKENDS, IdealUpdate, LayerConfig, Updater, gains_restored
from cosim.train.network import MLP
from cosim.train.plots import plot_audit, plot_run
from cosim.train.stopping import StopBetweenBatches
from cosim.train.unitcell import CELLS, CapUpdate, LspIdealUpdate, UnitCellSpec
from cosim.write.pair_update import PulseUpdate, mapping_for
from cosim.write.step_table import StepTable
from models.errors import ParameterError
from models.pulse import PulseShape
from models.registry import device_names, get_device

__all__ = ["UPDATES", "TrainConfig", "make_updater", "train"]

UPDATES = ("ideal", "fast", "spice")


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how. ``TrainConfig()`` is ``xbar train`` with no options.

    Attributes
    ----------
    hidden : tuple of int
        Hidden layer sizes.
    epochs, batch_size : int
    lr : float
        SGD learning rate.
    seed : int
    forward, backward : str
        Read backends: "software", "ideal", "fast", "spice" or "calibrated".
    update : str
        "ideal" (exact float update, the control), or pulse-coincidence updates of ``device`` on
        its numpy twin ("fast") or in ngspice ("spice").
    device : str
        Registry name of the device for pulse updates (its range sets the weight mapping).
    bl : int
        Pulse slots per update sub-phase.
    update_method : str
        spice updates: "slots" (one .dc sweep point per write slot, the default) or "transient"
        (the array of device subcircuits in one transient); see cosim.write.pair_update.PulseUpdate.
    layer : LayerConfig
    checkpoint_every : int
        Mini-batches between checkpoints (their granularity).
    checkpoint_seconds : float
        Least wall time between two checkpoints within an epoch (the end of an epoch always
        writes one, and so does the first multiple of ``checkpoint_every`` after a start or
        resume): a checkpoint of an MNIST-sized network is 9-14 MB, and at 20 mini-batches (about
        a second) it would be written 4 GB per epoch. Neither cadence changes the training (a
        resume redoes the mini-batches since the last checkpoint to the same result), so a run
        can resume with other values.
    unit_cell : str
        "pair" (a differential pair of ``device``) or "2pcm3t1c" (PCM pair of ``device`` with
        gain ``gain_f`` plus a 3T1C cell; ``update`` then acts on the 3T1C cells: "ideal" float,
        "fast" twin, "spice" transistor-level transient).
    transfer_every : int
        2pcm3t1c only (a pair refuses a non-default value): mini-batches between transfers
        (counted over the whole run).
    gain_f : float
        2pcm3t1c only (likewise): gain F of the PCM pair.
    lsp_pulse_width : float
        2pcm3t1c only (likewise): width of the 3T1C update pulses [s] (edges a tenth of it, slot
        twice it: :func:`lsp_pulse`). The step of one pulse is the pump current times it over
        the capacitor: 5 ns gives the cell about 470 steps over its conductance range, the
        ~400 of the cell the 2018 experiment used (Li et al., VLSI 2018); 50 ns (the PCM write
        pulse, the default before) gives 47, and those coarse steps cost the unit cell most of
        its gap to software on 6,000 MNIST images over four epochs (docs/mnist.md).
    device_table : StepTable, optional
        ``device``'s step table fitted to SPICE (``xbar calibrate``; loaded with
        :func:`cosim.calibrate.bundle.load_calibration`): the ``fast`` pair updates move the
        conductances by it instead of the numpy twin. Needs ``update="fast"`` and
        ``unit_cell="pair"``.
    """

    hidden: tuple[int, ...] = (32,)
    epochs: int = 3
    batch_size: int = 10
    lr: float = 0.5
    seed: int = 0
    forward: str = "spice"
    backward: str = "spice"
    update: str = "ideal"
    device: str = "pcm"
    bl: int = 10
    update_method: str = "slots"
    layer: LayerConfig = field(default_factory=LayerConfig)
    checkpoint_every: int = 20
    checkpoint_seconds: float = 30.0
    unit_cell: str = "pair"
    transfer_every: int = 20
    gain_f: float = 3.0
    lsp_pulse_width: float = 5e-9
    device_table: StepTable | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in ("forward", "backward"):
            if getattr(self, name) not in READ_BACKENDS:
                raise ParameterError(f"{name} backend must be one of {READ_BACKENDS}, got {getattr(self, name)!r}")
        if self.update not in UPDATES:
            raise ParameterError(f"update must be one of {UPDATES}, got {self.update!r}")
        if self.update_method not in ("slots", "transient"):
            raise ParameterError(f"update_method must be 'slots' or 'transient', got {self.update_method!r}")
        if self.device not in device_names():
            raise ParameterError(f"device must be one of {device_names()}, got {self.device!r}")
        if not isinstance(self.layer, LayerConfig):
            raise ParameterError(f"layer must be a LayerConfig, got {type(self.layer).__name__}")
        if self.unit_cell not in CELLS:
            raise ParameterError(f"unit_cell must be one of {CELLS}, got {self.unit_cell!r}")
        self._check_unit_cell()
        self._check_device_table()
        for name in ("epochs", "batch_size", "checkpoint_every", "bl"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"{name} must be an integer >= 1, got {v!r}")
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                                  for h in self.hidden):
            raise ParameterError(f"hidden sizes must be integers >= 1, got {self.hidden}")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ParameterError(f"lr must be > 0, got {self.lr}")
        if not (self.lsp_pulse_width > 0 and np.isfinite(self.lsp_pulse_width)):
            raise ParameterError(f"lsp_pulse_width must be > 0 [s], got {self.lsp_pulse_width}")
        c = self.checkpoint_seconds
        if isinstance(c, bool) or not isinstance(c, (int, float, np.number)) or not (c >= 0 and np.isfinite(c)):
            raise ParameterError(f"checkpoint_seconds must be >= 0 [s], got {self.checkpoint_seconds}")

    def _check_unit_cell(self) -> None:
        if self.unit_cell == "2pcm3t1c":
            self.unit_cell_spec()    # validates gain_f and transfer_every
            if self.update_method != "slots":
                raise ParameterError("update_method applies to pair updates; the 2pcm3t1c cell's 3T1C updates have "
                                     "one ngspice rendering (a transient of the cells)")
            if tuple(get_device(self.device).ports) != ("p", "n"):
                raise ParameterError(f"the unit cell's pair needs a two-terminal device, got {self.device!r}")
            return
        for name in ("transfer_every", "gain_f", "lsp_pulse_width"):
            default = type(self).__dataclass_fields__[name].default
            if getattr(self, name) != default:
                raise ParameterError(f"{name} applies to unit_cell='2pcm3t1c' only; with a pair it would be "
                                     f"ignored (got {getattr(self, name)!r}, leave it at {default!r})")

    def _check_device_table(self) -> None:
        t = self.device_table
        if t is None:
            return
        if not isinstance(t, StepTable):
            raise ParameterError(f"device_table must be a loaded StepTable (cosim.calibrate.bundle.load_calibration"
                                 f"(...).step_table(device)), got {type(t).__name__}")
        if self.update != "fast" or self.unit_cell != "pair":
            raise ParameterError("device_table (a step table fitted to SPICE) replaces the device twin of "
                                 "fast pair updates: it needs update='fast' and unit_cell='pair', got "
                                 f"update={self.update!r}, unit_cell={self.unit_cell!r}")
        if t.device != self.device:
            raise ParameterError(f"the step table was fitted to device {t.device!r}, the run updates {self.device!r}")
        shape = PulseShape()      # the updater's write pulse
        if not t.matches_pulse(shape):
            raise ParameterError(f"the {t.device} step table was fitted with the write pulse (width, rise, period) = "
                                 f"{t.pulse} s, not {(shape.width, shape.rise, shape.period)} s")

    def unit_cell_spec(self) -> UnitCellSpec:
        """The :class:`cosim.train.unitcell.UnitCellSpec` of a 2pcm3t1c run."""
        return UnitCellSpec(gain_f=self.gain_f, transfer_every=self.transfer_every)

    def record(self) -> dict:
        """The configuration as JSON: loaded objects (calibration, fits, step table) by the hash
        of their contents, the read chain as its config."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("layer", "device_table", "checkpoint_seconds")}
        out["hidden"] = list(self.hidden)
        lay = self.layer
        out["layer"] = {f.name: getattr(lay, f.name) for f in fields(lay)
                        if f.name not in ("mapping", "periphery", "calibration", "periphery_fit")}
        out["layer"]["mapping"] = asdict(lay.mapping)
        out["layer"]["periphery"] = None if lay.periphery is None else lay.periphery.to_dict()
        out["layer"]["calibration"] = None if lay.ir_model is None else content_digest(lay.ir_model.to_dict())
        out["layer"]["periphery_fit"] = None if lay.periphery_fit is None else content_digest(lay.periphery_fit.to_dict())
        out["device_table"] = None if self.device_table is None else content_digest(self.device_table.to_dict())
        if not lay.chain_autorange:        # recorded when used: checkpoints of earlier runs stay theirs
            del out["layer"]["chain_autorange"]
        pc = out["layer"]["periphery"]
        if pc is not None and pc["sensing"] == "lines":      # the same for the sensing of pairs
            del pc["sensing"], pc["mirror_gain"]
        elif pc is not None and pc["mirror_gain"] == 1.0:    # and for an ideal mirror
            del pc["mirror_gain"]
        if self.unit_cell != "2pcm3t1c" or self.lsp_pulse_width == LEGACY_LSP_PULSE_WIDTH:
            del out["lsp_pulse_width"]     # a unit-cell run of before resumes with --lsp-pulse-width 50e-9
        return out

    def fingerprint(self, data: Dataset) -> str:
        """A hash of the configuration and the data set: a checkpoint belongs to one run."""
        blob = json.dumps(self.run_record(data), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def run_record(self, data: Dataset) -> dict:
        """What the fingerprint hashes (kept in checkpoints, so a refused resume names what changed)."""
        return json.loads(json.dumps({"cfg": self.record(), "data": data.name, "n": len(data.y_train)},
                                     default=str))


#: The 3T1C update pulse width of unit-cell runs before ``lsp_pulse_width`` (the PCM write pulse).
LEGACY_LSP_PULSE_WIDTH = 50e-9


def lsp_pulse(width: float) -> PulseShape:
    """The 3T1C update pulse of a given width [s]: edges a tenth of it, a slot twice it and a
    transient step a fifth of it (at 50 ns: the default ``PulseShape``, the write pulse the
    unit cell used before)."""
    return PulseShape(width=width, rise=width / 10, period=2 * width, tstep=width / 5)


def make_updater(cfg: TrainConfig, engine=None) -> Updater:
    """The update rule: the float control, or pulse coincidence on the device (twin, step table
    or ngspice); for the unit cell, on its 3T1C cells."""
    if cfg.unit_cell == "2pcm3t1c":
        cap = get_device("cap3t1c")
        if cfg.update == "ideal":
            return LspIdealUpdate(cap)
        return CapUpdate(cap, bl=cfg.bl, backend=cfg.update, engine=engine, shape=lsp_pulse(cfg.lsp_pulse_width))
    if cfg.update == "ideal":
        return IdealUpdate()
    return PulseUpdate(get_device(cfg.device), bl=cfg.bl, backend=cfg.update, r_wire=cfg.layer.r_wire,
                       engine=engine, seed=cfg.seed, method=cfg.update_method, table=cfg.device_table)


@dataclass
class _State:
    epoch: int = 0
    batch: int = 0
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    soft_losses: list = field(default_factory=list)
    times: dict = field(default_factory=lambda: {"forward": 0.0, "backward": 0.0, "update": 0.0, "eval": 0.0})
    transfers: list = field(default_factory=list)


def _save_checkpoint(path: Path, fp: str, net: MLP, soft: MLP, st: _State, run: dict | None = None) -> None:
    arrays = {}
    for k, (a, s) in enumerate(zip(net.layers, soft.layers)):
        gp, gm = a.conductances()
        arrays[f"gp{k}"], arrays[f"gm{k}"], arrays[f"soft{k}"] = gp, gm, s.W_soft
        if hasattr(a, "unit_state"):   # 2pcm3t1c: capacitors, polarities, transfer count
            arrays.update({f"{name}{k}": v for name, v in a.unit_state().items()})
        arrays[f"gains{k}"] = a.range_state()       # autoranging read chains: each tile's gain steps
    # the per-mini-batch losses as arrays: as JSON they grew to megabytes per checkpoint by the
    # end of an MNIST run (checkpoints of before kept them in the meta: still read)
    arrays["losses"], arrays["soft_losses"] = np.asarray(st.losses, float), np.asarray(st.soft_losses, float)
    for key in st.transfers[0] if st.transfers else ():   # likewise each transfer's statistics, a column each
        arrays[f"transfer_{key}"] = np.array([t[key] for t in st.transfers])
    meta = {"fingerprint": fp, "run": run, "epoch": st.epoch, "batch": st.batch, "history": st.history,
            "times": st.times, "transfer_keys": list(st.transfers[0]) if st.transfers else []}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:   # a kill mid-write leaves the previous one intact
        np.savez(fh, meta=json.dumps(meta), **arrays)


def _changes(old, new, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two run records."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in sorted(set(old) | set(new)) for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.').removeprefix('cfg.')}: {old!r} -> {new!r}"]


#: Run-record fields a resume may change: the epochs only bound the loop (data order, learning
#: rate and audit pace do not depend on them); the checkpoint cadence only decides what is saved.
RESUMABLE_CHANGES = {"epochs": None, "checkpoint_every": None}


def _only_longer(meta: dict, run: dict | None) -> bool:
    """Whether a checkpoint's run differs from ``run`` in its number of epochs and checkpoint
    cadence alone, and has not gone past the new number of epochs: the run goes on (or stops) as
    if it had been started with the new values."""
    old = meta.get("run")
    if not (isinstance(old, dict) and isinstance(old.get("cfg"), dict) and run and "epochs" in old["cfg"]):
        return False
    if {**old, "cfg": {**old["cfg"], **RESUMABLE_CHANGES}} != {**run, "cfg": {**run["cfg"], **RESUMABLE_CHANGES}}:
        return False
    target = run["cfg"]["epochs"]
    if meta["epoch"] > target or (meta["epoch"] == target and meta["batch"] > 0):
        done = f"{meta['epoch']} epochs" + (f" and {meta['batch']} mini-batches" if meta["batch"] else "")
        raise ParameterError(f"the checkpoint has trained {done}, more than --epochs {target}: a run can be "
                             "extended, not shortened (use a new --out folder, or --fresh)")
    return True


def _load_checkpoint(path: Path, fp: str, net: MLP, soft: MLP, run: dict | None = None) -> _State | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta["fingerprint"] != fp and not _only_longer(meta, run):
                changed = _changes(meta.get("run"), run) if meta.get("run") and run else []
                what = f" ({'; '.join(changed[:6])}{'; ...' if len(changed) > 6 else ''})" if changed else ""
                raise ParameterError(f"{path} belongs to a run with another configuration{what}; use a new --out "
                                     "folder, or --fresh to start this one over (train(..., resume=False))")
            for k, (a, s) in enumerate(zip(net.layers, soft.layers)):
                a.set_conductances(z[f"gp{k}"], z[f"gm{k}"])
                if hasattr(a, "set_unit_state"):
                    a.set_unit_state({name: z[f"{name}{k}"] for name in ("vc", "vc_ref", "polarity", "transfers")
                                      if f"{name}{k}" in z.files})
                if f"gains{k}" in z.files:
                    a.set_range_state(z[f"gains{k}"])
                s.W_soft = z[f"soft{k}"].copy()
            losses = [z[k].tolist() if k in z.files else meta[k] for k in ("losses", "soft_losses")]
            keys = meta.get("transfer_keys", [])
            cols = [z[f"transfer_{key}"].tolist() for key in keys]
            transfers = [dict(zip(keys, row)) for row in zip(*cols)] if keys else meta.get("transfers", [])
        return _State(meta["epoch"], meta["batch"], meta["history"], *losses, meta["times"], transfers)
    except ParameterError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise ParameterError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:120]}); delete it "
                             "or start over with --fresh (train(..., resume=False))") from None


def _networks(cfg: TrainConfig, data: Dataset, engine) -> tuple[MLP, MLP]:
    """The analog network and its software twin (same sizes, seed and initial weights)."""
    sizes = [data.n_features, *cfg.hidden, data.n_classes]
    layer_cfg = cfg.layer
    unit = cfg.unit_cell == "2pcm3t1c"
    if cfg.update != "ideal" or unit:   # device updates: the device's conductance range is the mapping's
        layer_cfg = replace(layer_cfg, mapping=mapping_for(get_device(cfg.device), layer_cfg.mapping.w_max))
    if unit:
        net = MLP(sizes, layer_cfg, cfg.seed, engine=engine, unit_cell=cfg.unit_cell_spec(), msp=get_device(cfg.device))
    else:
        net = MLP(sizes, layer_cfg, cfg.seed, engine=engine)
    return net, MLP(sizes, layer_cfg, cfg.seed)


def train(cfg: TrainConfig, data: Dataset, out_dir: Path, *, engine=None, progress: bool = True,
          resume: bool = True, stop_after: int | None = None, monte_carlo: MonteCarloRuns | None = None,
          audit: AuditConfig | None = None) -> dict:
    """Train; returns the metrics (also written to ``out_dir/metrics.json``).

    ``monte_carlo``: after training, the test accuracy over sampled hardware instances of the
    trained arrays, read on the forward backend
    (:func:`cosim.calibrate.montecarlo.monte_carlo_accuracy`), in ``metrics["monte_carlo"]``
    and ``monte_carlo.json`` (evaluation only: not in the fingerprint).

    ``audit``: ngspice re-reads a random tile every few mini-batches and logs how far the fast
    reads are from it (:mod:`cosim.train.audit`; ``audit.jsonl``, ``audit.png``, and
    ``metrics["audit"]``). It does not change the training, so it is not in the fingerprint.

    ``stop_after`` stops after that many mini-batches in this call without writing a
    checkpoint: a test hook for killing a run (it resumes from the last checkpoint, redoing the
    batches since, to the same result).

    The folder is held for this run (:class:`cosim.sim.files.RunLock`): a second run on it fails
    with a message that names this one. A checkpoint of the same run with fewer ``epochs`` (a
    finished run, say) is extended: the run goes on to the result a longer run gives.
    """
    out_dir = Path(out_dir)
    auditor = Auditor(audit, cfg, out_dir, cfg.seed) if audit is not None else None   # refused before any folder
    with RunLock(out_dir, f"train {cfg.forward}/{cfg.backward}/{cfg.update}"):
        return _train(cfg, data, out_dir, engine, progress, resume, stop_after, monte_carlo, auditor)


def _check_calibration_covers(net: MLP, cfg: TrainConfig, data: Dataset) -> None:
    """Calibrated reads are refused before the first mini-batch on an array larger than every
    array of the calibration, or (one forward and one transposed read of every layer at the
    present conductances) whose line loading lies beyond the calibration's range: the model's
    fitted terms would be extrapolated. Later states that leave the range warn, as every
    calibrated read does."""
    if "calibrated" not in (cfg.forward, cfg.backward):
        return
    lay = cfg.layer
    for layer in net.layers:      # array shapes: the fit is an empirical one, held out on the sizes it saw
        for t in layer.tiles:
            rows, cols = t.g_plus.shape
            _, source = calibration_bound(lay.calibration, rows, 2 * cols, lay.r_wire)
            if source.startswith("beyond"):
                raise ParameterError(
                    f"a {rows} x {2 * cols} array (physical cells: a pair takes two columns) lies {source}: "
                    "the IR model would be used where it was never checked. Tile on arrays the calibration "
                    "covers (--max-rows / --max-cols, which counts weight columns), calibrate on this shape too "
                    f"(xbar calibrate --sizes 16 32 64 128 256 {rows}x{2 * cols}), or read exactly (--reads fast)")
    with warnings.catch_warnings(), gains_restored(net.layers):    # probe reads: the gains stay unset
        warnings.filterwarnings("error", message="cheap IR model used at a line loading", category=RuntimeWarning)
        try:
            if cfg.forward == "calibrated":
                net.forward(data.X_train[:1], "calibrated")
            if cfg.backward == "calibrated":
                for layer in net.layers:
                    layer.backward(np.ones((1, layer.n_out)), "calibrated")
        except RuntimeWarning as exc:
            raise ParameterError(f"{exc}. This run's arrays lie beyond the calibration: calibrate on their size and "
                                 "wires (xbar calibrate --sizes ... --r-wire ...) or read them exactly (--reads fast)") \
                from None


def _train(cfg: TrainConfig, data: Dataset, out_dir: Path, engine, progress: bool, resume: bool,
           stop_after: int | None, monte_carlo: MonteCarloRuns | None, auditor: Auditor | None) -> dict:
    net, soft = _networks(cfg, data, engine)
    if monte_carlo is not None:   # checked before the run, not after it
        if not isinstance(monte_carlo, MonteCarloRuns):
            raise ParameterError(f"monte_carlo must be a MonteCarloRuns, got {type(monte_carlo).__name__}")
        check_accuracy_run(net, cfg.forward)
    updater = make_updater(cfg, engine)
    fp = cfg.fingerprint(data)
    ckpt = out_dir / "checkpoint.npz"
    run = cfg.run_record(data)
    st = (_load_checkpoint(ckpt, fp, net, soft, run) if resume else None) or _State()
    mc_old = out_dir / "monte_carlo.json"
    if st.history and mc_old.exists() and st.history[-1]["epoch"] != cfg.epochs:
        mc_old.replace(out_dir / f"monte_carlo-epoch{st.history[-1]['epoch']}.json")   # of the shorter run
    _check_calibration_covers(net, cfg, data)
    n_batches = -(-len(data.y_train) // cfg.batch_size)
    if auditor is not None and st.epoch * n_batches + st.batch > 0:
        auditor.resume()                # a resumed run's audits keep the pace they had
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.epochs * n_batches, initial=st.epoch * n_batches + st.batch, unit="batch",
                   desc=f"train {cfg.forward}/{cfg.backward}/{cfg.update}",
                   mininterval=0.1 if sys.stderr.isatty() else 15.0)   # a log, not a flood, in CI
    try:
        with StopBetweenBatches() as stop:
            stopped = _run_epochs(cfg, data, net, soft, updater, st, ckpt, fp, run, n_batches, bar, stop_after,
                                  auditor, stop)
    finally:
        if bar is not None:
            bar.close()
    if stopped:
        return {"stopped": True, "epoch": st.epoch, "batch": st.batch}
    metrics = _finish(cfg, data, net, soft, st, out_dir, auditor)
    if monte_carlo is not None:
        mc = monte_carlo_accuracy(net, data.X_test, data.y_test, monte_carlo.variation, runs=monte_carlo.runs,
                                  seed=monte_carlo.seed, backend=cfg.forward)
        atomic_json(out_dir / "monte_carlo.json", mc, indent=2)
        metrics["monte_carlo"] = mc
    return metrics


def _run_epochs(cfg: TrainConfig, data: Dataset, net: MLP, soft: MLP, updater, st: _State, ckpt: Path, fp: str,
                run: dict, n_batches: int, bar, stop_after: int | None, auditor: Auditor | None = None,
                stop: StopBetweenBatches | None = None) -> bool:
    """The mini-batches from the state ``st`` to the end; True when ``stop_after`` stopped them. A
    signal that ``stop`` noted is handed on after the mini-batch, with a checkpoint of it."""
    unit = cfg.unit_cell == "2pcm3t1c"
    n = len(data.y_train)
    done_here = 0
    saved = -math.inf             # the first chance after a start saves: a run killed often still advances
    while st.epoch < cfg.epochs:
        order = np.random.default_rng([cfg.seed, st.epoch]).permutation(n)
        while st.batch < n_batches:
            idx = order[st.batch * cfg.batch_size:(st.batch + 1) * cfg.batch_size]
            x, y = data.X_train[idx], data.y_train[idx]
            rng = np.random.default_rng([cfg.seed, st.epoch, st.batch])
            due = auditor is not None and auditor.due(st.epoch * n_batches + st.batch)
            st.losses.append(net.step(x, y, cfg, updater, rng, False, st.times, audit=auditor if due else None))
            st.soft_losses.append(soft.step(x, y, cfg, updater, rng, True, st.times))
            st.batch += 1
            done_here += 1
            if unit and (st.epoch * n_batches + st.batch) % cfg.transfer_every == 0:
                t0 = time.perf_counter()
                stats = [layer.transfer() for layer in net.layers]
                st.times["transfer"] = st.times.get("transfer", 0.0) + time.perf_counter() - t0
                st.transfers.append({"epoch": st.epoch, "batch": st.batch,
                                     **{k: [s[k] for s in stats] for k in stats[0]}})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(st.losses[-20:]):.3f}", refresh=False)
            end_of_epoch = st.batch == n_batches
            if end_of_epoch:
                _end_epoch(cfg, data, net, soft, st, n_batches)   # epoch += 1, batch = 0
            stopping = stop is not None and stop.claim()
            if stopping or end_of_epoch or (st.batch % cfg.checkpoint_every == 0
                                            and time.monotonic() - saved >= cfg.checkpoint_seconds):
                _save_checkpoint(ckpt, fp, net, soft, st, run)
                saved = time.monotonic()
            if stopping:
                print(f"checkpoint saved after {st.epoch} epochs and {st.batch} mini-batches: the same command "
                      "resumes the run", file=sys.stderr, flush=True)
                stop.hand_on()
            if stop_after is not None and done_here >= stop_after:
                return True
            if end_of_epoch:
                break
    return False


def _end_epoch(cfg: TrainConfig, data: Dataset, net: MLP, soft: MLP, st: _State, n_batches: int) -> None:
    t0 = time.perf_counter()
    acc, pred = net.accuracy(data.X_test, data.y_test, cfg.forward)
    st.times["eval"] += time.perf_counter() - t0
    sacc, spred = soft.accuracy(data.X_test, data.y_test, "software")
    w_err = []
    for a, s in zip(net.layers, soft.layers):
        w_err.append(float(np.sqrt(np.mean((a.weights() - s.W_soft) ** 2) / np.mean(s.W_soft ** 2))))
    st.history.append({"epoch": st.epoch + 1,
                       "loss": float(np.mean(st.losses[-n_batches:])),
                       "software_loss": float(np.mean(st.soft_losses[-n_batches:])),
                       "test_accuracy": acc, "software_test_accuracy": sacc,
                       "same_predictions": float((pred == spred).mean()),
                       "weight_rel_rms_error": w_err,
                       "transfers": len(st.transfers)})
    st.epoch += 1
    st.batch = 0


def _finish(cfg: TrainConfig, data: Dataset, net: MLP, soft: MLP, st: _State, out_dir: Path,
            auditor: Auditor | None = None) -> dict:
    last = st.history[-1]
    metrics = {"config": cfg.record(), "data": data.name, "n_train": int(len(data.y_train)),
               "n_test": int(len(data.y_test)), "history": st.history,
               "final": {k: last[k] for k in ("test_accuracy", "software_test_accuracy", "same_predictions")},
               "seconds": st.times, "transfers": st.transfers}
    if auditor is not None and auditor.path.exists():
        records = read_audit_log(auditor.path)
        metrics["audit"] = summarize_audit(records)
        plot_audit(records, out_dir / "audit.png")
    atomic_json(out_dir / "metrics.json", metrics, indent=2, default=str)
    net_dir = out_dir / "netlists"
    net_dir.mkdir(exist_ok=True)
    for k, layer in enumerate(net.layers):
        for t_i, tile in enumerate(layer.tiles):
            xb = tile.crossbar(layer.cfg)
            atomic_write(net_dir / f"layer{k}_tile{t_i}.cir", xb.deck(np.full((1, xb.spec.rows), layer.cfg.v_read)))
            if hasattr(tile, "lsp_crossbar"):   # the 3T1C array with its reference cells
                lx = tile.lsp_crossbar(layer.cfg, layer.lsp, layer.g_shared)
                atomic_write(net_dir / f"layer{k}_tile{t_i}_3t1c.cir", lx.deck(np.full((1, lx.spec.rows), lx.spec.v_read)))
    plot_run(metrics, net, soft, out_dir)
    metrics["out_dir"] = str(out_dir)
    return metrics
