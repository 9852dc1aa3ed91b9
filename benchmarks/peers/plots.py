"""The two figures of docs/peers.md: accuracy vs T, and accuracy vs spikes per sample (frontier)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import protocol as P

COLORS = {
    "snncompile": "tab:red",
    "spikingjelly": "tab:blue",
    "sinabs": "tab:green",
    "snntoolbox": "tab:purple",
}
STYLES = (
    "-",
    "--",
    ":",
    "-.",
    (0, (5, 1)),
    (0, (1, 2, 4, 2)),
    (0, (3, 1, 1, 1, 1, 1)),
    (0, (8, 2)),
    (0, (2, 4)),
)


def _series(data: dict, model: str, key: str):
    """(label, color, style, width, xs, ys) for every mode with numbers."""
    for tool, doc in data.get(model, {}).items():
        default = doc.get("default_method")
        for i, m in enumerate(doc["modes"]):
            if m["status"] == "error" or m["accuracy"] is None or m.get("early_exit"):
                continue  # early-exit modes: in the tables (their T is the most steps a sample may run)
            pts = [
                (x, a)
                for x, a in zip(m["T"] if key == "T" else m[key], m["accuracy"])
                if x is not None and a is not None and (key == "T" or x > 0)
            ]
            if not pts:
                continue
            bold = tool == "snncompile" and m["mode"] == default
            label = f"{tool} {m['mode']}" + (" (partial)" if m["status"] == "partial" else "")
            yield label, COLORS[tool], STYLES[i % len(STYLES)], 2.6 if bold else 1.2, *zip(*pts)


def _grid(data: dict, key: str, xlabel: str, path: Path) -> None:
    models = [m for m in P.MODELS if m in data]
    rows = max(1, -(-len(models) // 3))  # three per row
    fig, axes = plt.subplots(rows, 3, figsize=(17, 5 * rows), squeeze=False)
    handles = {}
    for ax, model in zip(axes.flat, models):
        for label, color, style, width, xs, ys in _series(data, model, key):
            (h,) = ax.plot(
                xs, [100 * y for y in ys], color=color, linestyle=style, linewidth=width, marker="."
            )
            handles.setdefault(label, h)
        ax.set_xscale("log", base=2 if key == "T" else 10)
        ax.set_title(model)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=5, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def accuracy_vs_t(data: dict, path: Path) -> None:
    _grid(data, "T", "T (time steps)", path)


def frontier(data: dict, path: Path) -> None:
    _grid(data, "spikes_per_sample", "spikes per sample (cumulative up to T)", path)
