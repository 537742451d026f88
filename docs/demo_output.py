"""The demo's output for the documentation site: ``python docs/demo_output.py DEMO_DIR docs/demo``.

Reads ``DEMO_DIR/results.nc`` written by ``pescore demo`` (``make demo``; ``make docs-demo`` runs
this script) and writes into the output folder, to commit:

- ``summary.json``: the versions the demo ran with and the date of its results file, its test
  images, seeds, pruners and ratios, the rule, and :func:`pescore_nb.recommend`'s table (the largest
  trusted ratio of each pruner beside what accuracy alone would trust): the home page's table;
- one PNG per entry of :data:`FIGURES`, drawn by :mod:`pescore_nb.plot` from the results, and, in
  ``summary.json``, the code that draws each: the gallery.

Nothing here is typed by hand: every number on those pages comes from the results file.
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import math
from pathlib import Path

import pescore_nb
from pescore_nb import plot, schema, structure

SUMMARY = "summary.json"
# (title, plot function, keyword arguments besides the demo's layer and CAM method); "middle" is the
# demo's middle ratio, "first" its first pruner.
FIGURES = (
    ("PE and accuracy against the pruning ratio", "pe_vs_ratio", {}),
    ("PE against the compute and parameters kept", "pe_vs_cost", {}),
    ("PE against accuracy", "pe_vs_accuracy", {}),
    ("PE drop against accuracy drop", "drop_scatter", {}),
    ("PE per class at one ratio", "class_bars", {"ratio": "middle"}),
    ("SSIM, IoU and confidence beside PE", "decomposition", {}),
    ("The maps of four images, ratio by ratio", "heatmap_grid", {"pruner": "first"}),
)
RECOMMEND_COLUMNS = ("pruner", "layer", "cam", "ratio", "model", "accuracy_only_ratio", "first_failure",
                     "fails_on", "n_seeds", "covers")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="the folder `pescore demo --out` wrote")
    parser.add_argument("out", type=Path, help="the folder to write (docs/demo)")
    args = parser.parse_args(argv)
    results = args.demo / "results.nc"
    if not results.is_file():
        parser.error(f"{results} does not exist; run `make demo` (or `pescore demo --out {args.demo}`) first.")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = summarise(results, args.out, load_path=f"{args.demo.name}/results.nc")
    (args.out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"Wrote {args.out / SUMMARY} and {len(summary['figures'])} figures in {args.out}.")


def summarise(results: Path, out: Path, load_path: str) -> dict:
    """The summary of ``results`` (see the module docstring); draws the figures into ``out``."""
    ds = pescore_nb.load(results)
    table = pescore_nb.recommend(ds)
    seeds = sorted({int(seed) for seed in ds[schema.SEED].values if seed != schema.NO_SEED})
    ratios = sorted({float(ratio) for ratio in ds[schema.RATIO].values if ratio > 0})
    modified = datetime.datetime.fromtimestamp(results.stat().st_mtime, tz=datetime.timezone.utc)
    return {"command": "pescore demo", "versions": json.loads(ds.attrs["versions"]),
            "date": modified.date().isoformat(), "images": int(ds.sizes[schema.IMAGE]), "seeds": seeds,
            "pruners": structure.pruners(ds), "ratios": ratios, "rule": table.attrs["rule_text"],
            "recommend": [{column: json_value(row[column]) for column in RECOMMEND_COLUMNS}
                          for row in table.to_dict("records")],
            "load": f'import pescore_nb\nfrom pescore_nb import plot\n\nds = pescore_nb.load("{load_path}")',
            "figures": draw_figures(ds, out, ratios)}


def draw_figures(ds, out: Path, ratios: list[float]) -> list[dict]:
    """Draw each of :data:`FIGURES` at the demo's (first) layer and CAM method into ``out``."""
    layer, cam = str(ds[schema.LAYER].values[0]), str(ds[schema.CAM].values[0])
    chosen = {"middle": ratios[len(ratios) // 2], "first": structure.pruners(ds)[0]}
    figures = []
    for title, function, options in FIGURES:
        draw = getattr(plot, function)
        parameters = inspect.signature(draw).parameters
        kwargs = {name: chosen.get(value, value) for name, value in options.items()}
        kwargs.update({name: value for name, value in (("layer", layer), ("cam", cam)) if name in parameters})
        file = f"{function}.png"
        arguments = "".join(f", {name}={value!r}" for name, value in kwargs.items())
        figure = draw(ds, path=out / file, **kwargs)
        import matplotlib.pyplot as plt

        plt.close(figure)
        figures.append({"title": title, "file": file,
                        "code": f'plot.{function}(ds{arguments}, path="{file}")'})
    return figures


def json_value(value):
    """``value`` as JSON holds it: NaN as null, numpy scalars as Python numbers."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return list(value) if isinstance(value, (list, tuple)) else value


if __name__ == "__main__":
    main()
