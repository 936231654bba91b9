"""ngspice in the loop: a training run's fast reads checked against the circuit while it runs.

Layer: cosim.train. Every K mini-batches (``every``), an :class:`Auditor` picks one tile at random
over the layers, their tiles and both read directions (a forward read of any layer, or the
transposed read of a layer above the first), and reads it again in ngspice: the whole wired
array at the conductances the run's reads saw (after the reads, before the update), through
the same read chain when the run uses one, on that mini-batch's drive voltages. Each audit is
one JSON line of ``audit.jsonl`` in the run folder:

- ``rms_error_fs`` / ``max_error_fs``: fast minus ngspice over the tile's full scale
  (inputs x v_read x g_range, the digital full scale of the tile's outputs);
- ``outputs_differing``: the share of digitised outputs that differ (quantised reads only);
- ``scope``: ``array`` (ngspice re-read the wired array; in a read-chain run the DACs,
  integrators and ADCs are then the fast path's own models) or ``transient`` (the whole chain
  in ngspice, on the first ``samples`` samples);
- ``analog_rms_error_fs``: the same RMS error before the converters (the ideal quantiser's
  input, or the read chain's charge); ``judged``: which error is held to the bound (``analog``
  for calibrated reads through the ideal quantiser: the calibration bounds analog currents, and
  an analog error far below an LSB still flips the codes next to a threshold by a whole LSB);
- forward reads: ``predictions_same``, the share of the mini-batch whose predicted class is the
  same when the ngspice outputs replace the fast ones (the layers above read on the fast path);
  transposed reads: ``delta_sign_flips``, the share of the backpropagated errors at the tile's
  rows whose sign changes;
- ``bound_fs``: what the fast path claims: the calibration's held-out RMS error for the
  smallest calibrated array that holds the tile (calibrated reads; a unit cell: F times the
  pair's plus the 3T1C array's), 1e-9 (the exact solver), or one LSB (quantised reads; through
  a read chain one LSB of its ADC at the tile's gain step, times F for a unit cell, whose output
  is F times the pair's difference plus the 3T1C part). An audit over 2x its bound warns, or
  stops the run (``strict``);
- ``calibration_bound_fs``: calibrated reads through a read chain, audited at array scope: the
  calibration's bound as above, held against ``analog_rms_error_fs`` (the IR model's currents
  before the twin's converters against ngspice's array), with the same 2x rule.

``every="auto"``: the first audit after AUTO_START mini-batches, on the largest tile, then one
whenever the time spent on audits, the next one counted at the cost of the costliest so far,
stays within ``budget`` (20 %) of the training time so far (``every`` in the log: the mini-batches since the previous audit). The tile is drawn from (seed,
mini-batch), and a fixed K audits the multiples of K, so a resumed run audits the same
mini-batches and tiles (``auto`` follows the measured times); a re-audited mini-batch replaces
its line when the log is read (:func:`read_audit_log`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cosim.read.irmodel import Calibration
from cosim.train.layers import gains_restored
from cosim.train.network import MLP, sigmoid, softmax
from models.errors import ParameterError, XbarError

__all__ = ["AuditConfig", "AuditError", "Auditor", "read_audit_log", "summarize_audit", "AUDIT_LOG"]

AUDIT_LOG = "audit.jsonl"
#: ``every="auto"``: mini-batches before the first audit (the training's pace is measured first).
AUTO_START = 10
#: ``chain_scope="auto"``: tiles up to this many physical cells are audited through the whole
#: chain's transient, larger ones as an ngspice DC read of the array.
CHAIN_TRANSIENT_CELLS = 128 * 128
#: Relative error the exact fast solver is held to against ngspice.
EXACT_BOUND = 1e-9


class AuditError(XbarError, RuntimeError):
    """An audited read is further from ngspice than its bound allows (``strict``)."""


@dataclass(frozen=True)
class AuditConfig:
    """``every``: mini-batches between audits, or ``"auto"`` (audits take at most ``budget`` of
    the training time, past the first); ``strict``: stop the run when an audit exceeds twice its
    bound (or when ngspice fails on an audit; otherwise that warns and the run goes on);
    ``chain_scope``: what an audit of a read-chain run simulates in ngspice: ``"transient"`` the
    whole chain (DACs, wired array, integrators, ADCs) in one transient, on the first
    ``chain_samples`` samples of the mini-batch (0: all); ``"array"`` the wired array in one DC
    deck on the whole mini-batch, the converters from the fast path's own models (a read chain's
    array is linear and static: its charges are DC currents times volt-seconds); ``"auto"``
    the transient for tiles of at most CHAIN_TRANSIENT_CELLS physical cells, the array above.
    A chain's transient resolves every DAC edge of every line: a 256-row tile takes minutes
    per sample, its DC read seconds for a whole mini-batch."""

    every: int | str = "auto"
    strict: bool = False
    budget: float = 0.2
    chain_samples: int = 1
    chain_scope: str = "auto"

    def __post_init__(self) -> None:
        if self.every != "auto" and (not isinstance(self.every, int) or isinstance(self.every, bool)
                                     or self.every < 1):
            raise ParameterError(f"audit every must be an integer >= 1 or 'auto', got {self.every!r}")
        if not 0 < self.budget < 1:
            raise ParameterError(f"audit budget must be in (0, 1), got {self.budget}")
        if isinstance(self.chain_samples, bool) or not isinstance(self.chain_samples, int) or self.chain_samples < 0:
            raise ParameterError(f"audit chain_samples must be an integer >= 0, got {self.chain_samples!r}")
        if self.chain_scope not in ("auto", "transient", "array"):
            raise ParameterError(f"audit chain_scope must be 'auto', 'transient' or 'array', got {self.chain_scope!r}")


def calibration_bound(cal, rows: int, cols: int, r_wire: float) -> tuple[float | None, str]:
    """The held-out RMS error (fraction of the largest column current) of the smallest calibrated
    array that holds rows x cols at the nearest calibrated wire resistance >= r_wire."""
    if not isinstance(cal, Calibration) or not cal.errors:
        return None, "no held-out errors in the calibration"
    rs = sorted({e["r_wire"] for e in cal.errors})
    r = next((x for x in rs if x >= r_wire - 1e-12), rs[-1])
    at_r = [e for e in cal.errors if e["r_wire"] == r]
    fits = [e for e in at_r if e["rows"] >= rows and e["cols"] >= cols]
    if fits:
        e = min(fits, key=lambda e: e["rows"] * e["cols"])
        return float(e["cal_rmse"]), f"calibrated {e['rows']}x{e['cols']} at {r:g} ohm"
    e = max(at_r, key=lambda e: e["rows"] * e["cols"])
    return float(e["cal_rmse"]), f"beyond the calibration (largest {e['rows']}x{e['cols']} at {r:g} ohm)"


class Auditor:
    """Called by :meth:`cosim.train.network.MLP.step` between the reads and the update."""

    def __init__(self, cfg: AuditConfig, phases, out_dir: str | Path, seed: int):
        if "spice" in (phases.forward, phases.backward):
            raise ParameterError("an audit compares fast reads with ngspice: this run already reads in ngspice "
                                 f"(forward {phases.forward}, backward {phases.backward})")
        if "software" in (phases.forward, phases.backward):
            raise ParameterError("an audit checks the analog reads against ngspice; software reads have none")
        self.cfg, self.phases, self.seed = cfg, phases, seed
        self.path = Path(out_dir) / AUDIT_LOG
        self.every = cfg.every if cfg.every != "auto" else AUTO_START
        self.step, self.next_step = 0, (0 if cfg.every != "auto" else AUTO_START)
        self._t0: float | None = None          # the first mini-batch this auditor saw
        self._audit_total = 0.0
        self._last_audit_s: float | None = None      # auto: the costliest audit so far [s]
        self._last_step: int | None = None

    def resume(self) -> None:
        """A resumed run (``auto``) keeps its pace: the costliest finished audit of its log and the
        step of its last audit stand in for this process's, so the next audit waits for its
        budget rather than coming after AUTO_START mini-batches on the largest tile."""
        if self.cfg.every != "auto" or not self.path.exists():
            return
        records = read_audit_log(self.path)
        done = [r for r in records if "error" not in r]
        if done:
            self._last_audit_s = max(float(r["seconds"]) for r in done)
            self._last_step = int(records[-1]["step"])

    def due(self, step: int) -> bool:
        """Audit mini-batch ``step`` (counted over the run)? Multiples of K; ``auto``:
        the first after AUTO_START mini-batches (on the largest tile, to measure the worst
        case), then whenever the time spent on audits, this one counted at the cost of the
        costliest so far, stays within ``budget`` of the training time."""
        self.step = step
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        if self.cfg.every != "auto":
            return step % self.cfg.every == 0      # multiples of K: a resumed run audits the same mini-batches
        if self._last_audit_s is None:
            return step >= self.next_step
        train_s = now - self._t0 - self._audit_total
        return self._audit_total + self._last_audit_s <= self.cfg.budget * train_s

    def __call__(self, net: MLP, acts: list, zs: list, deltas: list) -> None:
        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, 0xA0D17, self.step])
        cands = [(k, i, d) for k, layer in enumerate(net.layers) for i in range(len(layer.tiles))
                 for d in ((False, True) if k > 0 else (False,))]
        k, i, transpose = cands[int(rng.integers(len(cands)))]
        if self.cfg.every == "auto" and self._last_audit_s is None:    # the first: the worst case
            k, i, transpose = max(cands, key=lambda c: net.layers[c[0]].tiles[c[1]].g_plus.size)
        try:
            rec = self._audit(net, k, i, transpose, acts, zs, deltas)
        except XbarError as exc:         # ngspice failed on the audit: logged, and the run goes on
            rec = {"layer": k, "tile": i, "tile_shape": list(net.layers[k].tiles[i].g_plus.shape),
                   "direction": "backward" if transpose else "forward",
                   "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        seconds = time.perf_counter() - t0
        if self._last_step is not None and self.cfg.every == "auto":
            self.every = self.step - self._last_step       # mini-batches since the last audit
        rec.update(step=self.step, every=self.every, seconds=seconds)
        self._log(rec)
        self._audit_total += seconds
        self._last_audit_s, self._last_step = max(seconds, self._last_audit_s or 0.0), self.step
        self._judge(rec)

    # -- one audit ------------------------------------------------------------------------------
    def _audit(self, net: MLP, k: int, i: int, transpose: bool, acts, zs, deltas) -> dict:
        layer, t = net.layers[k], net.layers[k].tiles[i]
        batch = acts[0].shape[0]
        scope = self._scope(layer, t)
        n = self.cfg.chain_samples if scope == "transient" and self.cfg.chain_samples else batch
        n = min(n, batch)
        if n < batch:                     # the first n samples of the mini-batch, all through the same path
            acts, zs, deltas = ([a[:n] for a in arrays] for arrays in (acts, zs, deltas))
        backend = self.phases.backward if transpose else self.phases.forward
        u = deltas[k] if transpose else layer.augment(acts[k])
        V, amax = layer.drive(u, transpose)
        src, dst = (t.cols, t.rows) if transpose else (t.rows, t.cols)
        # both reads at the gain the tile holds (an autoranging chain); nothing of the run changes
        fa, sa = [], []
        fast = layer.read_tile(t, V[:, src], transpose, backend, adapt=False, analog=fa)
        ref = "spice-array" if layer.cfg.periphery is not None and scope == "array" else "spice"
        spice = layer.read_tile(t, V[:, src], transpose, ref, adapt=False, analog=sa)
        cfg = layer.cfg
        fs = V[:, src].shape[1] * cfg.v_read * cfg.mapping.g_range
        err = fast - spice
        quantised = cfg.periphery is not None or cfg.adc_bits is not None
        rec = {"layer": k, "tile": i, "tile_shape": list(t.g_plus.shape),
               "direction": "backward" if transpose else "forward", "backend": backend, "samples": n, "scope": scope,
               "periphery": cfg.periphery is not None,
               "rms_error_fs": float(np.sqrt(np.mean(err ** 2)) / fs), "max_error_fs": float(np.abs(err).max() / fs),
               "outputs_differing": float(np.mean(np.abs(err) > 1e-9 * fs)) if quantised else None,
               "analog_rms_error_fs": float(np.sqrt(np.mean((fa[0] - sa[0]) ** 2)) / fs)}
        rec["bound_fs"], rec["bound_source"] = self._bound(layer, t, fs, backend, quantised, transpose)
        # the calibration's bound is on the analog currents: an analog error far below an LSB still
        # flips the codes near a threshold, by a whole LSB. Judged before the quantiser then.
        rec["judged"] = "analog" if backend == "calibrated" and cfg.periphery is None else "digitised"
        if backend == "calibrated" and ref == "spice-array":   # a chain run's IR model, alone against ngspice
            rec["calibration_bound_fs"], rec["calibration_bound_source"] = self._calibration_bound(layer, t, fs)
        delta = np.zeros((u.shape[0], layer.n_in if transpose else layer.n_out))
        delta[:, dst] = err
        delta = layer.undrive(-delta, amax, transpose)          # ngspice minus fast, in the layer's numbers
        if transpose:                  # the error backpropagated to the layer below, at the tile's rows
            h = acts[k]
            back = (delta[:, :-1] if cfg.bias else delta) * h * (1 - h)
            rows = np.arange(layer.n_in)[t.rows]
            rows = rows[rows < h.shape[1]]
            d_prev = deltas[k - 1][:, rows]
            rec["delta_sign_flips"] = float(np.mean(np.sign(d_prev) != np.sign(d_prev + back[:, rows])))
            rec["predictions_same"] = None
        else:
            z = zs[k] + delta
            h = z if k == len(net.layers) - 1 else sigmoid(z)
            with gains_restored(net.layers):
                out = h if k == len(net.layers) - 1 else net.forward(h, self.phases.forward, start=k + 1)[-1]
            pred_fast = softmax(acts[-1]).argmax(axis=1)
            rec["predictions_same"] = float(np.mean(out.argmax(axis=1) == pred_fast))
        return rec

    def _scope(self, layer, t) -> str:
        """What ngspice re-reads: ``"array"`` (the wired array; a plain run's whole read, or a
        chain run's array behind the fast path's converters) or ``"transient"`` (the whole chain)."""
        if layer.cfg.periphery is None:
            return "array"
        if self.cfg.chain_scope != "auto":
            return self.cfg.chain_scope
        return "transient" if 2 * t.g_plus.size <= CHAIN_TRANSIENT_CELLS else "array"

    def _bound(self, layer, t, fs: float, backend: str, quantised: bool, transpose: bool = False):
        cfg = layer.cfg
        if cfg.periphery is not None:   # unit cells: the PCM pair's LSB (at its gain step), times its gain F
            step = t.gains.get(("main", transpose), 0)
            lsb = t.read_chain(cfg, layer.engine, cfg.periphery_fit).with_gain(step).lsb_current()
            gain = getattr(getattr(layer, "spec", None), "gain_f", 1.0)
            return float(lsb * max(1.0, gain) / fs), "one LSB of the read chain's ADC"
        if backend == "calibrated":
            return self._calibration_bound(layer, t, fs)
        if quantised:
            return 1.0 / (2 ** int(cfg.adc_bits)), "one LSB of the ADC"
        return EXACT_BOUND, "the exact solver"

    @staticmethod
    def _calibration_bound(layer, t, fs: float):
        """The calibration's held-out RMS error for the tile's size, on the analog outputs."""
        cfg = layer.cfg
        rows, cols = t.g_plus.shape
        frac, source = calibration_bound(cfg.calibration, rows, 2 * cols, cfg.r_wire)
        if frac is None:
            return None, source
        col_sum = float((t.g_plus + t.g_minus).sum(axis=0).max())   # the calibration's full scale, per pair
        if hasattr(t, "lsp_crossbar"):      # unit cell: F times the pair's error plus the 3T1C array's
            lsp = t.lsp_crossbar(cfg, layer.lsp, layer.g_shared, layer.engine).G
            col_sum = layer.spec.gain_f * col_sum + float((lsp[:, 0::2] + lsp[:, 1::2]).sum(axis=0).max())
        return float(np.sqrt(2) * frac * cfg.v_read * col_sum / fs), source

    # -- bookkeeping ----------------------------------------------------------------------------
    def _log(self, rec: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:          # a log: appended line by line, synced
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _judge(self, rec: dict) -> None:
        if "error" in rec:
            msg = (f"audit of layer {rec['layer']} tile {rec['tile']} ({rec['direction']}, mini-batch {rec['step']}) "
                   f"failed in ngspice: {rec['error']}")
            if self.cfg.strict:
                raise AuditError(msg + "; stopped (--audit-strict). The audit log is in " + str(self.path))
            warnings.warn(msg + "; training goes on", RuntimeWarning, stacklevel=2)
            return
        checks = [(judged_error(rec), rec["bound_fs"], rec["bound_source"], rec.get("judged", "digitised"))]
        if rec.get("calibration_bound_fs") is not None:
            checks.append((rec["analog_rms_error_fs"], rec["calibration_bound_fs"], rec["calibration_bound_source"],
                           "the IR model's currents before the converters"))
        for err, bound, source, what in checks:
            if bound is None or err <= 2 * bound:
                continue
            msg = (f"audit of layer {rec['layer']} tile {rec['tile']} ({rec['direction']}, mini-batch {rec['step']}): "
                   f"RMS error {err:.2e} of full scale against ngspice ({what}), over twice its bound "
                   f"{bound:.2e} ({source})")
            if self.cfg.strict:
                raise AuditError(msg + "; stopped (--audit-strict). The audit log is in " + str(self.path))
            warnings.warn(msg, RuntimeWarning, stacklevel=2)


def judged_error(rec: dict) -> float:
    """The RMS error an audit is held to its bound by: before the quantiser for calibrated reads
    through the ideal quantiser (the calibration bounds analog currents), else the digitised one."""
    return rec["analog_rms_error_fs"] if rec.get("judged") == "analog" else rec["rms_error_fs"]


def read_audit_log(path: str | Path) -> list[dict]:
    """The audits of a run (``RUN_DIR`` or its ``audit.jsonl``), one per mini-batch (a resumed
    run's repeat replaces the earlier line); a torn last line (a killed run) is skipped."""
    p = Path(path)
    p = p / AUDIT_LOG if p.is_dir() else p
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist: run xbar train with --audit-every")
    by_step: dict[int, dict] = {}
    try:
        text = p.read_text()
        lines = text.splitlines()
    except UnicodeDecodeError:
        raise ParameterError(f"{p} is not an audit log (not text): give a run folder of xbar train --audit-every") \
            from None
    for n, line in enumerate(lines):
        try:
            rec = json.loads(line)
            _check_record(rec)
            by_step[int(rec["step"])] = rec
        except (ValueError, KeyError, TypeError) as exc:
            if n != len(lines) - 1 or text.endswith("\n"):     # a torn write never has its newline
                raise ParameterError(f"{p}: line {n + 1} is not an audit record ({exc})") from None
    return [by_step[s] for s in sorted(by_step)]


#: What every audit record holds: its mini-batch, and either an ngspice failure or its errors.
RECORD_NUMBERS = ("rms_error_fs", "max_error_fs")


def _check_record(rec) -> None:
    if not isinstance(rec, dict):
        raise TypeError("not a JSON object")
    if isinstance(rec.get("step"), bool) or not isinstance(rec.get("step"), int):
        raise KeyError("no integer 'step'")
    for k in ("seconds",) + (() if "error" in rec else ("every",) + RECORD_NUMBERS):
        if isinstance(rec.get(k), bool) or not isinstance(rec.get(k), (int, float)):
            raise KeyError(f"no number {k!r}")
    if "error" not in rec and rec.get("direction") not in ("forward", "backward"):
        raise ValueError("'direction' must be forward or backward")


def summarize_audit(records: list[dict]) -> dict:
    """Counts, error percentiles, prediction agreement and bound excesses of an audit log.
    ``predictions_same`` is the share of the audited samples whose prediction the ngspice
    outputs leave unchanged; ``predictions_same_mean`` and ``_min`` are over the audits."""
    failed = [r for r in records if "error" in r]
    records = [r for r in records if "error" not in r]
    if not records:
        return {"audits": 0, "failed": len(failed)}
    rms = np.array([r["rms_error_fs"] for r in records])
    mx = np.array([r["max_error_fs"] for r in records])
    fwd = [r for r in records if r["direction"] == "forward"]
    judged = [r for r in fwd if r.get("predictions_same") is not None]
    same = [r["predictions_same"] for r in judged]
    samples = sum(int(r["samples"]) for r in judged)
    diff = [r["outputs_differing"] for r in records if r.get("outputs_differing") is not None]
    over = [r for r in records if r.get("bound_fs") is not None and judged_error(r) > 2 * r["bound_fs"]]
    cal = [r["analog_rms_error_fs"] / r["calibration_bound_fs"] for r in records
           if r.get("calibration_bound_fs")]          # chain runs: the IR model against its calibration
    analog = [r["analog_rms_error_fs"] for r in records if "analog_rms_error_fs" in r]
    return {"audits": len(records), "forward": len(fwd), "backward": len(records) - len(fwd),
            "rms_error_fs_median": float(np.median(rms)), "rms_error_fs_max": float(rms.max()),
            "max_error_fs_max": float(mx.max()),
            "analog_rms_error_fs_median": float(np.median(analog)) if analog else None,
            "analog_rms_error_fs_max": float(np.max(analog)) if analog else None,
            "samples": samples,      # of the audited forward reads; their predictions, weighted by samples:
            "predictions_same": (float(sum(int(r["samples"]) * r["predictions_same"] for r in judged) / samples)
                                 if samples else None),
            "predictions_same_mean": float(np.mean(same)) if same else None,      # per audit
            "predictions_same_min": float(np.min(same)) if same else None,
            "outputs_differing_mean": float(np.mean(diff)) if diff else None,
            "over_twice_bound": len(over),
            "calibration_judged": len(cal), "calibration_over_twice": sum(c > 2 for c in cal),
            "calibration_worst_ratio": float(max(cal)) if cal else None,
            "audit_seconds": float(sum(r["seconds"] for r in records + failed)),
            "every_last": records[-1]["every"], "failed": len(failed)}
