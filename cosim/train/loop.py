"""Training at circuit fidelity: backpropagation whose reads and updates go through the arrays.

Layer: cosim. :func:`train` runs a multilayer perceptron (sigmoid hidden layers, softmax
output, cross-entropy loss) on analog layers, with the forward read, the transposed backward
read and the update each on its chosen backend, and beside it a software network with the same
seed, architecture, initial weights and mini-batch schedule. After every ``checkpoint_every``
mini-batches it writes a checkpoint; a killed run resumes where it stopped and ends with the
same result (every random draw derives from (seed, epoch, batch), not from a running state).

``cell`` picks the weight's hardware: ``"pair"`` (a differential pair of ``device``, updated by
``update``) or ``"2pcm3t1c"`` (the IBM 2018 unit cell of :mod:`cosim.train.unitcell`: updates go to
the 3T1C cells, every ``transfer_every`` mini-batches the 3T1C part is transferred into the PCM
pair and its polarity inverted; capacitor states, polarities and transfer counts are part of
the checkpoint).

``device_table`` swaps the numpy twin of ``fast`` pair updates for the device's step table fitted
to SPICE (``xbar calibrate``; :class:`cosim.write.pair_update.PulseUpdate` ``table=``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from cosim.train.data import Dataset
from cosim.train.layers import READ_BACKENDS, AnalogLayer, IdealUpdate, LayerConfig, Updater
from models.errors import ParameterError

UPDATES = ("ideal", "fast", "spice")


def make_updater(cfg: "TrainConfig", engine=None) -> Updater:
    """The update rule: the float control, or pulse coincidence on the device (twin or ngspice);
    for the unit cell, on its 3T1C cells."""
    if cfg.cell == "2pcm3t1c":
        from cosim.train.unitcell import CapUpdate, LspIdealUpdate
        from models.device import get_device
        cap = get_device("cap3t1c")
        if cfg.update == "ideal":
            return LspIdealUpdate(cap)
        return CapUpdate(cap, bl=cfg.bl, backend=cfg.update, engine=engine)
    if cfg.update == "ideal":
        return IdealUpdate()
    from cosim.write.pair_update import PulseUpdate
    from models.device import get_device
    table = None
    if cfg.device_table is not None:
        from cosim.calibrate.devices import load_step_table
        from models.device import PulseShape
        table = load_step_table(cfg.device_table, cfg.device, shape=PulseShape())   # the updater's pulse
    return PulseUpdate(get_device(cfg.device), bl=cfg.bl, backend=cfg.update, r_wire=cfg.layer.r_wire,
                       engine=engine, seed=cfg.seed, method=cfg.update_method, table=table)


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how.

    Attributes
    ----------
    hidden : tuple of int
        Hidden layer sizes.
    epochs, batch_size : int
    lr : float
        SGD learning rate.
    seed : int
    forward, backward : str
        Read backends: "software", "ideal", "fast" or "spice".
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
        Mini-batches between checkpoints.
    cell : str
        "pair" (a differential pair of ``device``) or "2pcm3t1c" (PCM pair of ``device`` with
        gain ``gain_f`` plus a 3T1C cell; ``update`` then acts on the 3T1C cells: "ideal" float,
        "fast" twin, "spice" transistor-level transient).
    transfer_every : int
        2pcm3t1c only (a pair refuses a non-default value): mini-batches between transfers
        (counted over the whole run).
    gain_f : float
        2pcm3t1c only (likewise): gain F of the PCM pair.
    device_table : str, optional
        Path of a ``fits.json`` or ``calibration.json`` of ``xbar calibrate``: the
        ``fast`` pair updates move the conductances by ``device``'s step table fitted to SPICE
        (:func:`cosim.calibrate.devices.load_step_table`) instead of its numpy twin. Needs
        ``update="fast"`` and ``cell="pair"``.
    """

    hidden: tuple[int, ...] = (32,)
    epochs: int = 10
    batch_size: int = 10
    lr: float = 0.5
    seed: int = 0
    forward: str = "fast"
    backward: str = "fast"
    update: str = "ideal"
    device: str = "pcm"
    bl: int = 10
    update_method: str = "slots"
    layer: LayerConfig = field(default_factory=LayerConfig)
    checkpoint_every: int = 20
    cell: str = "pair"
    transfer_every: int = 20
    gain_f: float = 3.0
    device_table: str | None = None

    def __post_init__(self) -> None:
        for name in ("forward", "backward"):
            if getattr(self, name) not in READ_BACKENDS:
                raise ParameterError(f"{name} backend must be one of {READ_BACKENDS}, got {getattr(self, name)!r}")
        if self.update not in UPDATES:
            raise ParameterError(f"update must be one of {UPDATES}, got {self.update!r}")
        if self.update_method not in ("slots", "transient"):
            raise ParameterError(f"update_method must be 'slots' or 'transient', got {self.update_method!r}")
        from models.device import device_names
        if self.device not in device_names():
            raise ParameterError(f"device must be one of {device_names()}, got {self.device!r}")
        from cosim.train.unitcell import CELLS
        if self.cell not in CELLS:
            raise ParameterError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.cell == "2pcm3t1c":
            self.unit_cell()    # validates gain_f and transfer_every
            if self.update_method != "slots":
                raise ParameterError("update_method applies to pair updates; the 2pcm3t1c cell's 3T1C updates have "
                                     "one ngspice rendering (a transient of the cells)")
            from models.device import get_device
            if tuple(get_device(self.device).ports) != ("p", "n"):
                raise ParameterError(f"the unit cell's pair needs a two-terminal device, got {self.device!r}")
        if self.cell == "pair":
            for name in ("transfer_every", "gain_f"):
                default = type(self).__dataclass_fields__[name].default
                if getattr(self, name) != default:
                    raise ParameterError(f"{name} applies to cell='2pcm3t1c' only; with cell='pair' it would be "
                                         f"ignored (got {getattr(self, name)!r}, leave it at {default!r})")
        if self.device_table is not None:
            if self.update != "fast" or self.cell != "pair":
                raise ParameterError("device_table (a step table fitted to SPICE) replaces the device twin of "
                                     "fast pair updates: it needs update='fast' and cell='pair', got "
                                     f"update={self.update!r}, cell={self.cell!r}")
            from cosim.calibrate.devices import load_step_table
            from models.device import PulseShape
            # exists, holds a table of this device, fitted with the updater's write pulse
            load_step_table(self.device_table, self.device, shape=PulseShape())
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(h < 1 for h in self.hidden):
            raise ParameterError(f"hidden sizes must be >= 1, got {self.hidden}")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ParameterError(f"lr must be > 0, got {self.lr}")

    def unit_cell(self):
        """The :class:`cosim.train.unitcell.UnitCellSpec` of a 2pcm3t1c run."""
        from cosim.train.unitcell import UnitCellSpec
        return UnitCellSpec(gain_f=self.gain_f, transfer_every=self.transfer_every)

    def fingerprint(self, data: Dataset) -> str:
        cfg = asdict(self)
        if self.cell == "pair":   # unit-cell fields do not apply: checkpoints of pair runs stay valid
            for k in ("cell", "transfer_every", "gain_f"):
                cfg.pop(k)
        for k in ("periphery", "calibration"):   # likewise for runs without a read chain or calibration
            if getattr(self.layer, k) is None:
                cfg["layer"].pop(k)
        def digest(obj) -> str:
            return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

        # the fits themselves, not where their files lie: a re-calibration invalidates a checkpoint
        if self.device_table is None:   # and without a step table
            cfg.pop("device_table")
        else:
            from cosim.calibrate.devices import load_step_table
            cfg["device_table"] = digest(load_step_table(self.device_table, self.device).to_dict())
        if self.layer.calibration is not None:
            from cosim.read.irmodel import Calibration
            fits = {"ir_model": Calibration.load(self.layer.calibration).model.to_dict()}
            if self.layer.periphery is not None:
                from cosim.calibrate.periphery import load_periphery_fit
                fits["periphery_fit"] = load_periphery_fit(self.layer.calibration, self.layer.periphery).to_dict()
            cfg["layer"]["calibration"] = digest(fits)
        blob = json.dumps({"cfg": cfg, "data": data.name, "n": len(data.y_train)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class MLP:
    """Analog layers plus the rules of backprop; ``software=True`` uses the float weights."""

    def __init__(self, sizes: list[int], layer_cfg: LayerConfig, seed: int, engine=None, *, unit_cell=None,
                 msp=None):
        rng = np.random.default_rng([seed, 0xA11])
        self.layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            a = np.sqrt(6.0 / (n_in + n_out))
            W = rng.uniform(-a, a, (n_in, n_out))
            if unit_cell is None:
                self.layers.append(AnalogLayer(W, layer_cfg, engine=engine))
            else:
                from cosim.train.unitcell import UnitCellLayer
                self.layers.append(UnitCellLayer(W, layer_cfg, unit_cell, engine=engine, msp=msp))

    def forward(self, x: np.ndarray, backend: str) -> list[np.ndarray]:
        acts = [x]
        for k, layer in enumerate(self.layers):
            z = layer.forward(acts[-1], backend)
            acts.append(z if k == len(self.layers) - 1 else _sigmoid(z))
        return acts

    def step(self, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, updater: Updater,
             rng: np.random.Generator, software: bool, times: dict) -> float:
        fwd = "software" if software else cfg.forward
        bwd = "software" if software else cfg.backward
        t0 = time.perf_counter()
        acts = self.forward(x, fwd)
        t1 = time.perf_counter()
        p = _softmax(acts[-1])
        loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        d = p.copy()
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        deltas = [d]
        for k in range(len(self.layers) - 1, 0, -1):
            h = acts[k]
            deltas.insert(0, self.layers[k].backward(deltas[0], bwd) * h * (1 - h))
        t2 = time.perf_counter()
        for k, layer in enumerate(self.layers):
            layer.update(acts[k], deltas[k], cfg.lr, updater, rng, software=software)
        t3 = time.perf_counter()
        if not software:
            times["forward"] += t1 - t0
            times["backward"] += t2 - t1
            times["update"] += t3 - t2
        return loss

    def accuracy(self, X: np.ndarray, y: np.ndarray, backend: str) -> tuple[float, np.ndarray]:
        pred = self.forward(X, backend)[-1].argmax(axis=1)
        return float((pred == y).mean()), pred


@dataclass
class _State:
    epoch: int = 0
    batch: int = 0
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    soft_losses: list = field(default_factory=list)
    times: dict = field(default_factory=lambda: {"forward": 0.0, "backward": 0.0, "update": 0.0, "eval": 0.0})
    transfers: list = field(default_factory=list)


def _save_checkpoint(path: Path, fp: str, net: MLP, soft: MLP, st: _State) -> None:
    arrays = {}
    for k, (a, s) in enumerate(zip(net.layers, soft.layers)):
        gp, gm = a.conductances()
        arrays[f"gp{k}"], arrays[f"gm{k}"], arrays[f"soft{k}"] = gp, gm, s.W_soft
        if hasattr(a, "unit_state"):   # 2pcm3t1c: capacitors, polarities, transfer count
            arrays.update({f"{name}{k}": v for name, v in a.unit_state().items()})
    meta = {"fingerprint": fp, "epoch": st.epoch, "batch": st.batch, "history": st.history,
            "losses": st.losses, "soft_losses": st.soft_losses, "times": st.times, "transfers": st.transfers}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=json.dumps(meta), **arrays)
    tmp.replace(path)   # atomic: a kill mid-write leaves the previous checkpoint intact


def _load_checkpoint(path: Path, fp: str, net: MLP, soft: MLP) -> _State | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta["fingerprint"] != fp:
            raise ParameterError(f"{path} belongs to a run with another configuration; use a new --out "
                                 "folder or delete the checkpoint")
        for k, (a, s) in enumerate(zip(net.layers, soft.layers)):
            a.set_conductances(z[f"gp{k}"], z[f"gm{k}"])
            if hasattr(a, "set_unit_state"):
                a.set_unit_state({name: z[f"{name}{k}"] for name in ("vc", "polarity", "transfers")})
            s.W_soft = z[f"soft{k}"].copy()
    return _State(meta["epoch"], meta["batch"], meta["history"], meta["losses"], meta["soft_losses"], meta["times"],
                  meta.get("transfers", []))


def train(cfg: TrainConfig, data: Dataset, out_dir: Path, *, engine=None, progress: bool = True,
          resume: bool = True, stop_after: int | None = None, monte_carlo: dict | None = None) -> dict:
    """Train; returns the metrics (also written to ``out_dir/metrics.json``).

    ``monte_carlo`` (keyword arguments of :func:`cosim.calibrate.montecarlo.monte_carlo_accuracy`, e.g.
    ``{"runs": 20, "sigma_d2d": 0.1, "stuck_frac": 0.01}``): after training, the test accuracy
    over sampled hardware instances of the trained arrays, read on the forward backend, in
    ``metrics["monte_carlo"]`` and ``monte_carlo.json`` (evaluation only: not in the fingerprint).

    ``stop_after`` stops after that many mini-batches in this call without writing a
    checkpoint: a test hook for killing a run (it resumes from the last checkpoint, redoing the
    batches since, to the same result).
    """
    if monte_carlo:   # checked before the run, not after it
        from cosim.calibrate.montecarlo import check_monte_carlo
        check_monte_carlo(monte_carlo)
        if cfg.cell != "pair" or cfg.forward == "software":
            raise ParameterError("monte_carlo needs cell='pair' and an analog forward backend")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = [data.n_features, *cfg.hidden, data.n_classes]
    layer_cfg = cfg.layer
    unit = cfg.cell == "2pcm3t1c"
    if cfg.update != "ideal" or unit:   # device updates: the device's conductance range is the mapping's
        from cosim.write.pair_update import mapping_for
        from models.device import get_device
        layer_cfg = replace(layer_cfg, mapping=mapping_for(get_device(cfg.device), layer_cfg.mapping.w_max))
    if unit:
        from models.device import get_device
        net = MLP(sizes, layer_cfg, cfg.seed, engine=engine, unit_cell=cfg.unit_cell(), msp=get_device(cfg.device))
    else:
        net = MLP(sizes, layer_cfg, cfg.seed, engine=engine)
    soft = MLP(sizes, layer_cfg, cfg.seed)
    updater = make_updater(cfg, engine)
    fp = cfg.fingerprint(data)
    ckpt = out_dir / "checkpoint.npz"
    st = (_load_checkpoint(ckpt, fp, net, soft) if resume else None) or _State()
    n = len(data.y_train)
    n_batches = -(-n // cfg.batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        import sys
        bar = tqdm(total=cfg.epochs * n_batches, initial=st.epoch * n_batches + st.batch, unit="batch",
                   desc=f"train {cfg.forward}/{cfg.backward}/{cfg.update}",
                   mininterval=0.1 if sys.stderr.isatty() else 15.0)   # a log, not a flood, in CI
    done_here = 0
    while st.epoch < cfg.epochs:
        order = np.random.default_rng([cfg.seed, st.epoch]).permutation(n)
        while st.batch < n_batches:
            idx = order[st.batch * cfg.batch_size:(st.batch + 1) * cfg.batch_size]
            x, y = data.X_train[idx], data.y_train[idx]
            rng = np.random.default_rng([cfg.seed, st.epoch, st.batch])
            st.losses.append(net.step(x, y, cfg, updater, rng, False, st.times))
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
            if end_of_epoch or st.batch % cfg.checkpoint_every == 0:
                _save_checkpoint(ckpt, fp, net, soft, st)
            if stop_after is not None and done_here >= stop_after:
                if bar is not None:
                    bar.close()
                return {"stopped": True, "epoch": st.epoch, "batch": st.batch}
            if end_of_epoch:
                break
    if bar is not None:
        bar.close()
    metrics = _finish(cfg, data, net, soft, st, out_dir)
    if monte_carlo:
        from cosim.calibrate.montecarlo import monte_carlo_accuracy
        mc = monte_carlo_accuracy(net, data.X_test, data.y_test, backend=cfg.forward, **monte_carlo)
        (out_dir / "monte_carlo.json").write_text(json.dumps(mc, indent=2))
        metrics["monte_carlo"] = mc
    return metrics


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


def _finish(cfg: TrainConfig, data: Dataset, net: MLP, soft: MLP, st: _State, out_dir: Path) -> dict:
    last = st.history[-1]
    metrics = {"config": asdict(cfg), "data": data.name, "n_train": int(len(data.y_train)),
               "n_test": int(len(data.y_test)), "history": st.history,
               "final": {k: last[k] for k in ("test_accuracy", "software_test_accuracy", "same_predictions")},
               "seconds": st.times, "transfers": st.transfers}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    net_dir = out_dir / "netlists"
    net_dir.mkdir(exist_ok=True)
    for k, layer in enumerate(net.layers):
        for t_i, tile in enumerate(layer.tiles):
            xb = tile.crossbar(layer.cfg)
            (net_dir / f"layer{k}_tile{t_i}.cir").write_text(xb.deck(np.full((1, xb.spec.rows), layer.cfg.v_read)))
            if hasattr(tile, "lsp_crossbar"):   # the 3T1C array with its reference row and column
                lx = tile.lsp_crossbar(layer.cfg, layer.lsp, layer.g_shared)
                (net_dir / f"layer{k}_tile{t_i}_3t1c.cir").write_text(lx.deck(np.full((1, lx.spec.rows), lx.spec.v_read)))
    _plots(metrics, net, soft, out_dir, st)
    metrics["out_dir"] = str(out_dir)
    return metrics


def _plots(metrics: dict, net: MLP, soft: MLP, out_dir: Path, st: _State) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = metrics["history"]
    ep = [r["epoch"] for r in h]
    cfg = metrics["config"]
    label = f"analog ({cfg['forward']} reads, {cfg['update']} updates{', 2PCM+3T1C' if cfg.get('cell') == '2pcm3t1c' else ''})"
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    ax[0].plot(ep, [r["loss"] for r in h], "o-", label=label)
    ax[0].plot(ep, [r["software_loss"] for r in h], "s--", label="software")
    ax[0].set(xlabel="epoch", ylabel="train loss", title="loss")
    ax[1].plot(ep, [100 * r["test_accuracy"] for r in h], "o-", label=label)
    ax[1].plot(ep, [100 * r["software_test_accuracy"] for r in h], "s--", label="software")
    ax[1].set(xlabel="epoch", ylabel="test accuracy [%]", title="accuracy")
    for k in range(len(net.layers)):
        ax[2].plot(ep, [r["weight_rel_rms_error"][k] for r in h], "o-", label=f"layer {k}")
    ax[2].set(xlabel="epoch", ylabel="RMS(W - W_software) / RMS(W_software)", title="weights vs software")
    for a in ax:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(net.layers), figsize=(5 * len(net.layers), 3.6), squeeze=False)
    for k, (layer, a) in enumerate(zip(net.layers, axes[0])):
        gp, gm = layer.conductances()
        a.hist(gp.ravel() * 1e6, bins=40, alpha=0.6, label="G+")
        a.hist(gm.ravel() * 1e6, bins=40, alpha=0.6, label="G-")
        g = layer.lsp.to_conductance(layer.unit_state()["vc"]) if hasattr(layer, "unit_state") else None
        if g is not None and np.ptp(g) > 0:   # the 3T1C cells (all at g_shared right after a transfer)
            a.hist(g.ravel() * 1e6, bins=40, alpha=0.6, label=f"3T1C g (g_shared {layer.g_shared * 1e6:.2f} uS)")
        a.set(xlabel="conductance [uS]", ylabel="devices", title=f"layer {k} after training")
        a.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "conductances.png", dpi=110)
    plt.close(fig)
