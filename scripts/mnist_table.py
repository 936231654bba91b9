"""The tables of the MNIST-scale training runs, from their run folders (finished or in progress).

    python scripts/mnist_table.py runs/uc_s0 runs/uc_s1 runs/pair_s0 ...
    python scripts/mnist_table.py runs/* --out runs/table

Each folder is an ``xbar train`` output folder: a finished run's ``metrics.json``, or the
``checkpoint.npz`` of one in progress (its history so far). Runs are grouped by everything in
their configuration but the seed (data set, unit cell, read path, chain and its sensing, ...);
for each group the script prints the last epoch of every seed, beside its software baseline
and the gap, the mean over the seeds at the epoch they all reached, and the audits (the share
of audited samples whose prediction the ngspice reads leave unchanged, weighted by samples;
audits over twice their bound). Then the accuracy of every run per epoch. Writes Markdown,
JSON and a plot of test accuracy per epoch (one colour per configuration, one line style per
seed, the software baselines in grey) to ``--out`` (default: print only). Reads nothing but the
folders; trains nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cosim.sim.files import publish, save_figure
from cosim.train.audit import AUDIT_LOG, read_audit_log, summarize_audit


def load_run(folder: Path) -> dict:
    """A run's configuration record, per-epoch history, whether it finished, and its audits."""
    metrics = folder / "metrics.json"
    if metrics.exists():
        m = json.loads(metrics.read_text())
        record, history, done = {"cfg": m["config"], "data": m["data"]}, m["history"], True
    else:
        ckpt = folder / "checkpoint.npz"
        if not ckpt.exists():
            raise SystemExit(f"{folder}: neither metrics.json nor checkpoint.npz (not an xbar train folder)")
        with np.load(ckpt, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
        if not meta.get("run"):
            raise SystemExit(f"{folder}: the checkpoint records no configuration (written before it did)")
        record, history, done = meta["run"], meta["history"], False
    audits = read_audit_log(folder / AUDIT_LOG) if (folder / AUDIT_LOG).exists() else []
    return {"folder": str(folder), "record": record, "history": history, "finished": done,
            "audit": summarize_audit(audits) if audits else None}


def describe(record: dict) -> tuple[str, str]:
    """(group key without the seed, a short label)."""
    cfg = dict(record["cfg"])
    seed = cfg.pop("seed", None)
    key = json.dumps({"cfg": cfg, "data": record.get("data")}, sort_keys=True)
    lay = cfg.get("layer", {})
    pc = lay.get("periphery")
    chain = "no chain" if pc is None else f"chain ({pc.get('sensing', 'lines')} sensing" + (
        f", autorange {lay['chain_autorange']})" if lay.get("chain_autorange") else ")")
    cell = "2 PCM + 3T1C" if cfg.get("unit_cell") == "2pcm3t1c" else f"{cfg.get('device', 'pcm').upper()} pair"
    reads = cfg.get("forward")
    label = f"{record.get('data')}, {cell}, {reads} reads, {chain}, {cfg.get('epochs')} epochs"
    return key, label + f" [seed {seed}]"


def milestones(history: list[dict], target: float, gap_from: int) -> tuple[int | None, float | None]:
    """The first epoch at ``target`` test accuracy [%], and the widest gap to the software
    baseline [points] from epoch ``gap_from`` on (None where the run has not got there)."""
    first = next((e["epoch"] for e in history if 100 * e["test_accuracy"] >= target - 1e-9), None)
    gaps = [100 * (e["software_test_accuracy"] - e["test_accuracy"]) for e in history if e["epoch"] >= gap_from]
    return first, (max(gaps) if gaps else None)


def tables(runs: list[dict], target: float = 97.5, gap_from: int = 4) -> tuple[str, dict]:
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key, r["label"] = describe(r["record"])
        r["seed"] = r["record"]["cfg"].get("seed")
        groups.setdefault(key, []).append(r)
    pct = lambda v: "-" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    lines = [f"| run | seed | epochs | test acc. | software | gap [points] | best | first epoch at {target:g} % | "
             f"largest gap from epoch {gap_from} | audits | predictions unchanged | over 2x bound |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for members in groups.values():
        members.sort(key=lambda r: r["seed"])
        for r in members:
            h = r["history"]
            last = h[-1] if h else {}
            a = r["audit"] or {}
            gap = 100 * (last["software_test_accuracy"] - last["test_accuracy"]) if h else None
            state = "" if r["finished"] else " (running)"
            first, widest = milestones(h, target, gap_from)
            r["first_epoch_at_target"], r["largest_gap_from"] = first, widest
            lines.append(f"| {r['label'].rsplit(' [', 1)[0]} | {r['seed']} | {len(h)}{state} "
                         f"| {pct(last.get('test_accuracy'))} | {pct(last.get('software_test_accuracy'))} | "
                         f"{'-' if gap is None else f'{gap:.2f}'} | "
                         f"{pct(max((e['test_accuracy'] for e in h), default=None))} | {first or '-'} | "
                         f"{'-' if widest is None else f'{widest:.2f}'} | {a.get('audits', '-')} | "
                         f"{pct(a.get('predictions_same'))} | {a.get('over_twice_bound', '-')} |")
        common = min(len(r["history"]) for r in members)
        if common and len(members) > 1:
            acc = np.array([r["history"][common - 1]["test_accuracy"] for r in members])
            sw = np.array([r["history"][common - 1]["software_test_accuracy"] for r in members])
            lines.append(f"| mean over seeds {', '.join(str(r['seed']) for r in members)} | | {common} | "
                         f"{100 * acc.mean():.2f} +- {100 * acc.std(ddof=1):.2f} % | {100 * sw.mean():.2f} % | "
                         f"{100 * (sw - acc).mean():.2f} (worst {100 * (sw - acc).max():.2f}) | | | | | | |")
            summary.append({"group": members[0]["label"].rsplit(" [", 1)[0], "seeds": [r["seed"] for r in members],
                            "epoch": common, "accuracy": acc.tolist(), "software": sw.tolist()})
    n_ep = max(len(r["history"]) for r in runs)
    head = "| epoch | " + " | ".join(f"{r['label']}" for r in runs) + " |"
    per_epoch = [head, "|---" * (len(runs) + 1) + "|"]
    for e in range(n_ep):
        cells = [_epoch_cell(r["history"][e]) if e < len(r["history"]) else "-" for r in runs]
        per_epoch.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    text = ("\n".join(lines) + "\n\nTest accuracy per epoch [%] (software baseline in brackets):\n\n"
            + "\n".join(per_epoch))
    keys = ("folder", "label", "seed", "finished", "first_epoch_at_target", "largest_gap_from", "history", "audit")
    data = {"target": target, "gap_from": gap_from, "runs": [{k: r[k] for k in keys} for r in runs],
            "groups": summary}
    return text, data


def _epoch_cell(e: dict) -> str:
    return f"{100 * e['test_accuracy']:.2f} (sw {100 * e['software_test_accuracy']:.2f})"


def plot(runs: list[dict], path: Path) -> Path:
    """Test accuracy per epoch of every run, beside its software baseline (grey)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.8))
    groups: list[str] = []
    styles = ["-", "--", ":", "-."]
    for r in runs:
        group = r["label"].rsplit(" [", 1)[0]
        if group not in groups:
            groups.append(group)
        colour = f"C{groups.index(group) % 10}"
        seeds = sorted({q["seed"] for q in runs if q["label"].rsplit(" [", 1)[0] == group})
        style = styles[seeds.index(r["seed"]) % len(styles)]
        h = r["history"]
        epochs = [e["epoch"] for e in h]
        ax.plot(epochs, [100 * e["test_accuracy"] for e in h], style, color=colour, marker=".",
                label=f"{group}, seed {r['seed']}" + ("" if r["finished"] else " (running)"))
        ax.plot(epochs, [100 * e["software_test_accuracy"] for e in h], style, color="0.6", lw=0.8)
    ax.plot([], [], color="0.6", lw=0.8, label="software baselines")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy [%]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=130)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="xbar train output folders")
    ap.add_argument("--out", default=None, help="also write mnist_table.md and .json here")
    ap.add_argument("--target", type=float, default=97.5, help="the accuracy whose first epoch is reported [%%]")
    ap.add_argument("--gap-from", type=int, default=4, help="the widest gap to software is taken from this epoch on")
    args = ap.parse_args(argv)
    runs = [load_run(Path(f)) for f in args.runs]
    text, data = tables(runs, args.target, args.gap_from)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        publish(args.out, "mnist_table", text, data)
        plot(runs, Path(args.out) / "mnist_table.png")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
