"""report.write_plots: the scatter subset, one draw per figure, no pyplot, the same bytes on every run."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from snncompile.report import SCATTER_POINTS, _save, _subsample, write_plots


def _pairs(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(n).astype(np.float32)
    return a, (a + rng.normal(0, 0.01, n)).astype(np.float32)


def test_subsample_is_fixed_and_keeps_the_worst_pairs_and_the_range():
    a, rate = _pairs(100_000)
    a[456], rate[123] = 7.0, 5.0  # the largest activation, and the largest rate (also the worst mismatch)
    a1, r1 = _subsample(a, rate, 4000)
    a2, r2 = _subsample(a.copy(), rate.copy(), 4000)
    assert np.array_equal(a1, a2) and np.array_equal(r1, r2)
    assert 4000 <= len(a1) <= 4000 + 4000 // 80 + 2
    assert a1.max() == 7.0 and r1.max() == 5.0
    worst = np.sort(np.abs(a - rate))[-4000 // 80:]
    assert np.isin(worst, np.abs(a1 - r1)).all()
    idx = np.flatnonzero(np.isin(a, a1) & np.isin(rate, r1))  # every kept pair is a pair of the input
    assert len(idx) >= len(a1)
    small = _pairs(SCATTER_POINTS)
    assert _subsample(*small, SCATTER_POINTS)[0] is small[0]


def _report() -> dict:
    return {"model": "m.onnx", "target": "sim", "accuracy": {"ann": 0.98}, "accuracy_vs_t": [0.5, 0.9, 0.97, None],
            "layers": [{"name": f"layer{i}", "spikes_per_sample": 10.0 * i} for i in range(5)]}


def test_write_plots_gives_the_same_bytes_on_every_run(tmp_path):
    scatter = {"big": _pairs(50_000, 2), "small": _pairs(300, 3)}
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    paths = write_plots(_report(), a, scatter)
    write_plots(_report(), b, scatter)
    assert [p.name for p in paths] == ["accuracy_vs_t.png", "spikes_per_layer.png", "activations_vs_rates.png"]
    for p in paths:
        assert p.read_bytes() == (b / p.name).read_bytes()
        with Image.open(p) as im:
            assert im.format == "PNG" and len(np.unique(np.asarray(im.convert("L")))) > 2


def test_save_draws_the_pixels_of_a_standard_tight_layout_savefig(tmp_path):
    """_save drops the layout engine tight_layout leaves behind (savefig would draw twice): same image."""

    def figure() -> Figure:
        fig = Figure(figsize=(5, 3))
        axes = fig.subplots(1, 2)
        for ax in axes:
            ax.scatter(*_pairs(500), s=2)
            ax.set(title="a long title\nof two lines", xlabel="ANN activation", ylabel="SNN rate x theta")
        return fig

    def counted(fig: Figure) -> list:
        calls, draw = [], fig.draw
        fig.draw = lambda renderer: calls.append(1) or draw(renderer)
        return calls

    fig = figure()
    ours_draws = counted(fig)
    ours = np.asarray(Image.open(_save(fig, tmp_path / "ours.png")))
    ref = figure()
    ref_draws = counted(ref)
    ref.tight_layout()
    buf = io.BytesIO()
    ref.savefig(buf, dpi=100, format="png")
    assert np.array_equal(ours, np.asarray(Image.open(buf)))
    assert (len(ours_draws), len(ref_draws)) == (1, 2)


def test_write_plots_does_not_import_pyplot(tmp_path):
    script = ("import sys; from pathlib import Path; import numpy as np; from snncompile.report import write_plots; "
              "r = {'model': 'm.onnx', 'target': 'sim', 'accuracy': {'ann': None}, 'accuracy_vs_t': [1.0], "
              "'layers': [{'name': 'x', 'spikes_per_sample': 1.0}]}; "
              f"write_plots(r, Path({str(tmp_path)!r}), {{'x': (np.ones(3), np.ones(3))}}); "
              "print('matplotlib.pyplot' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    assert p.stdout.strip() == "False" and (Path(tmp_path) / "activations_vs_rates.png").is_file()


def test_write_plots_pauses_the_collector_and_restores_it(tmp_path, monkeypatch):
    from snncompile import report

    seen, save = [], report._save

    def spy(fig, path):  # the collector's state while each figure is drawn and saved
        seen.append(gc.isenabled())
        return save(fig, path)

    monkeypatch.setattr(report, "_save", spy)
    try:
        write_plots(_report(), tmp_path, {"x": _pairs(50_000)})
        assert seen == [False, False, False] and gc.isenabled()
        gc.disable()
        write_plots(_report(), tmp_path)
        assert not gc.isenabled()
    finally:
        gc.enable()
