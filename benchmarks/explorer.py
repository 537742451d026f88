"""Redraw time of the explorer per control change, at 64x64 and 224x224 maps.

Drives the widgets from Python (as a user's click would: set a control's value, which redraws
synchronously) on synthetic Datasets opened lazily from disk, and prints the median milliseconds
per control, against a reference measured in the same run: a full re-plot from scratch with
matplotlib (a new figure with every panel and the summary, saved to PNG).

    PYTHONPATH=. python benchmarks/explorer.py [--repeats 15]

Goal: median < 100 ms at 64x64 and < 250 ms at 224x224.
"""
from __future__ import annotations

import argparse
import io
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pescore_nb import explore  # noqa: E402
from tests.synthetic import results_dataset  # noqa: E402

GOALS_MS = {64: 100.0, 224: 250.0}


def control_timings(explorer, repeats: int) -> dict[str, list[float]]:
    """``{control: [ms per change]}``: each control cycled through its options ``repeats`` times
    (a control with one option, such as "side by side with" beside two pruners, has nothing to time)."""
    timings = {}
    for name, control in vars(explorer.controls).items():
        options = [value for _, value in control.options] if isinstance(control.options[0], tuple) else control.options
        if len(options) < 2:
            continue
        values = itertools.cycle(options)
        timings[name] = []
        while len(timings[name]) < repeats:
            value = next(values)
            if value == control.value:
                continue
            start = time.perf_counter()
            control.value = value
            timings[name].append((time.perf_counter() - start) * 1e3)
    return timings


def replot_from_scratch(ds: xr.Dataset, model: int, image: int) -> bytes:
    """The reference: every panel and the summary plotted into a new figure, saved as PNG."""
    maps = ds.heatmap.isel(layer=0, cam=0, image=image).values
    picture = ds.input.isel(image=image).values.transpose(1, 2, 0)
    pe, labels = ds.pe.isel(layer=0, cam=0).values, ds.label.values
    pe_by_class = np.stack([pe[:, labels == label].mean(axis=1) for label in np.unique(labels)], axis=1)
    figure = Figure(figsize=(12, 6), dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 5)
    for panel, heatmap in zip(axes[0], [None, maps[0], maps[model], maps[model] - maps[0], None]):
        panel.imshow(picture)
        if heatmap is not None:
            panel.imshow(heatmap, cmap="viridis", alpha=0.5)
    axes[0, 4].imshow((maps[0] >= 0.5).astype(float) - (maps[model] >= 0.5))
    for row in pe_by_class.T:
        axes[1, 0].plot(ds.ratio.values, row, marker="o")
    axes[1, 0].axvline(float(ds.ratio[model]))
    axes[1, 1].bar(np.arange(pe_by_class.shape[1]), pe_by_class[model])
    for panel in axes[1, 2:]:
        panel.imshow(picture)
        panel.imshow(maps[-1], cmap="viridis", alpha=0.5)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="changes per control (default 15)")
    parser.add_argument("--images", type=int, default=40, help="images in each synthetic Dataset")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for size, goal in GOALS_MS.items():
            path = Path(folder) / f"results_{size}.nc"
            results_dataset(n_images=args.images, size=size, cams=("gradcam++", "gradcam"), pruners=("l2", "random", "l1"),
                            controls={"control:finetune": 0.05}).to_netcdf(path, engine="h5netcdf")
            with xr.open_dataset(path, engine="h5netcdf", chunks={}) as ds:
                start = time.perf_counter()
                explorer = explore(ds)
                opened_ms = (time.perf_counter() - start) * 1e3
                timings = control_timings(explorer, args.repeats)
                reference = []
                for model, image in itertools.islice(itertools.cycle([(1, 0), (2, 1)]), max(5, args.repeats // 3)):
                    start = time.perf_counter()
                    replot_from_scratch(ds, model, image)
                    reference.append((time.perf_counter() - start) * 1e3)
            every = [ms for values in timings.values() for ms in values]
            median, reference_median = statistics.median(every), statistics.median(reference)
            print(f"{size}x{size} maps, {args.images} images, lazily from disk (explorer built in {opened_ms:.0f} ms)")
            for name, values in timings.items():
                print(f"  {name:>8}: median {statistics.median(values):6.1f} ms   max {max(values):6.1f} ms")
            print(f"  all controls: median {median:.1f} ms (goal < {goal:.0f} ms: "
                  f"{'met' if median < goal else 'MISSED'}); full re-plot from scratch: median "
                  f"{reference_median:.1f} ms, {reference_median / median:.1f}x slower")


if __name__ == "__main__":
    main()
