"""Plots of a training run: loss, accuracy and weight error curves; conductance histograms; the audit.

Layer: cosim.train.
"""

from __future__ import annotations

from cosim.sim.files import save_figure
from pathlib import Path

import numpy as np

__all__ = ["plot_run", "plot_audit"]


def plot_run(metrics: dict, net, soft, out_dir: Path) -> None:
    """``curves.png`` (loss, accuracy, weight error per epoch) and ``conductances.png`` into ``out_dir``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = metrics["history"]
    ep = [r["epoch"] for r in h]
    cfg = metrics["config"]
    label = f"analog ({cfg['forward']} reads, {cfg['update']} updates{', 2PCM+3T1C' if cfg.get('unit_cell') == '2pcm3t1c' else ''})"
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
    save_figure(fig, out_dir / "curves.png", dpi=110)
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
    save_figure(fig, out_dir / "conductances.png", dpi=110)
    plt.close(fig)


def plot_audit(records: list[dict], path: Path) -> None:
    """``audit.png``: each audit's RMS and largest error against ngspice (fractions of full
    scale) over the run, forward and transposed reads apart, with the bounds they are held to
    (audits that failed in ngspice are left out)."""
    records = [r for r in records if "error" not in r]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for direction, marker in (("forward", "o"), ("backward", "s")):
        rs = [r for r in records if r["direction"] == direction]
        if rs:
            steps = [r["step"] for r in rs]
            ax.semilogy(steps, [max(r["rms_error_fs"], 1e-16) for r in rs], marker, ls="", label=f"{direction}: RMS")
            ax.semilogy(steps, [max(r["max_error_fs"], 1e-16) for r in rs], marker, ls="", mfc="none",
                        label=f"{direction}: largest")
            an = [r for r in rs if "analog_rms_error_fs" in r]
            if an:
                ax.semilogy([r["step"] for r in an], [max(r["analog_rms_error_fs"], 1e-16) for r in an], "x",
                            label=f"{direction}: RMS before the converters")
    bounded = [r for r in records if r.get("bound_fs")]
    if bounded:
        ax.semilogy([r["step"] for r in bounded], [2 * r["bound_fs"] for r in bounded], "k_", label="2 x bound")
    ax.set(xlabel="mini-batch", ylabel="fast - ngspice [fraction of full scale]", title="audit: fast reads vs ngspice")
    ax.grid(alpha=0.3, which="both")
    if records:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
