"""The command line ``pescore`` (also ``python -m pescore_nb``): the whole job, headless.

    pescore demo [--out DIR] [--quick] [--overwrite]
        Loads (or trains once) the zoo's VGG on ``shapes``, prunes it with ``l2`` and ``random``
        at 0.1 ... 0.9, fine-tunes each pruned copy for one epoch on 1500 training images
        (``--raw``: not at all; the zoo's small BN nets then lose most of their accuracy at once), scores
        Grad-CAM++ at the model's two ``cam_layers`` on the 600 test images, and writes DIR
        (default ``./pescore-demo``). ``--quick``: ratios 0.3, 0.6, 0.9, fine-tuning on 600
        training images, 120 test images.
    pescore run CONFIG.yaml [--overwrite] [--trust-pickle]
        The same for your models and data; the config is described in :mod:`pescore_nb.runconfig`
        (``examples/config.yaml`` is a sample that runs offline).

Both write ``results.nc`` (read it back with ``pescore_nb.load``), PNG figures (PE and accuracy
vs ratio, score drop vs accuracy drop, a heatmap grid per pruner, for each layer and CAM method),
and print a table of every model (pruner, ratio, params, MACs, accuracy, PE, trustworthy?) and
the largest trusted ratio of each pruner, by the rule of :mod:`pescore_nb.recommend`.
An existing ``results.nc`` is never replaced without ``--overwrite``. Exit status: 0 when done;
2 for a bad argument or config value, with one line on stderr naming the field and the fix.
"""
from __future__ import annotations

import argparse
import difflib
import sys
import warnings
from pathlib import Path
from typing import Sequence

import torch
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import data, plot, prune, runconfig, schema, zoo
from .evaluation import evaluate
from .trust import assess, recommend
from .runconfig import ConfigError, PruneSpec
from .scores import DegenerateMapWarning
from .store import save

DEMO_PRUNE = PruneSpec(methods=("l2", "random"), ratios=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9))
QUICK_PRUNE = PruneSpec(methods=("l2", "random"), ratios=(0.3, 0.6, 0.9))
QUICK_IMAGES = 120
SHOWN_CLASSES = 3  # failing classes named in the recommendation table
DEMO_HEATMAPS = {"heatmap_size": (32, 32), "heatmap_dtype": "float16"}  # the CAMs are 8x8: nothing lost
DEFAULT_THRESHOLDS = {"pe_threshold": 0.8, "max_accuracy_drop": 0.02}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pescore`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateMapWarning)  # every figure would repeat it; see _report
            args.command(args)
    except ConfigError as error:
        print(f"pescore: error: {error}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pescore", description="PE-score of pruned CNNs: does a pruned "
                                     "model still look at the same pixels, with the same confidence?")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="prune and score the zoo's VGG on the built-in shapes data")
    demo.add_argument("--out", default="pescore-demo", help="output folder (default: ./pescore-demo)")
    demo.add_argument("--quick", action="store_true", help="3 ratios, 120 test images: about a minute")
    demo.add_argument("--raw", action="store_true", help="do not fine-tune the pruned copies")
    demo.set_defaults(command=_demo)
    run = commands.add_parser("run", help="score your own models and data, as a YAML config says")
    run.add_argument("config", help="the YAML config (see examples/config.yaml)")
    run.add_argument("--trust-pickle", action="store_true",
                     help="allow 'pickle:' models (loading a pickle runs code from the file)")
    run.set_defaults(command=_run)
    for command in (demo, run):
        command.add_argument("--overwrite", action="store_true", help="replace an existing results.nc")
    return parser


def _demo(args: argparse.Namespace) -> None:
    results = Path(args.out).expanduser().resolve() / runconfig.RESULTS_FILE
    _refuse_existing(results, args.overwrite, "--out")
    reference = zoo.load("vgg", "shapes")
    test = data.shapes(QUICK_IMAGES, split="test") if args.quick else data.builtin("shapes", "test")
    finetune = None
    if not args.raw:
        train = runconfig.first_images(data.builtin("shapes", "train"), 600 if args.quick else 1500)
        loader = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
        finetune = prune.Finetune(loader, epochs=1, lr=3e-4)
    candidates = _sweep(reference, test, QUICK_PRUNE if args.quick else DEMO_PRUNE, finetune)
    ds = evaluate(reference, candidates, test, layers=reference.cam_layers, methods=("gradcam++",), **DEMO_HEATMAPS)
    _report(ds, results, args.overwrite, **DEFAULT_THRESHOLDS)


def _run(args: argparse.Namespace) -> None:
    config = runconfig.read(args.config, trust_pickle=args.trust_pickle)
    _refuse_existing(config.results, args.overwrite, "output")
    reference = config.reference.build()
    layers = config.layers or _cam_layers(reference)
    _check_layers({schema.REFERENCE: reference}, layers)
    dataset = config.data.build()
    if config.prune is not None:
        candidates = _sweep(reference, dataset, config.prune)
    else:
        candidates = {name: spec.build() for name, spec in config.candidates.items()}
    _check_layers(candidates, layers)
    ds = evaluate(reference, candidates, dataset, layers=layers, methods=config.methods,
                  batch_size=config.batch_size, device=config.device, config=config.pe,
                  heatmap_size=config.heatmap_size, heatmap_dtype=config.heatmap_dtype)
    _report(ds, config.results, args.overwrite, pe_threshold=config.pe_threshold,
            max_accuracy_drop=config.max_accuracy_drop)


def _refuse_existing(results: Path, overwrite: bool, field: str) -> None:
    if results.exists() and not overwrite:
        raise ConfigError(field, f"{results} already exists and pescore never replaces results silently; "
                          f"choose another {field}, or pass --overwrite.")


def _sweep(reference: nn.Module, dataset: Dataset, spec: PruneSpec,
           finetune: prune.Finetune | None = None) -> dict[str, nn.Module]:
    """Every method of ``spec`` at every ratio, with a progress bar: ``{"l2@0.30": model, ...}``."""
    example = dataset[0][0][None]
    jobs = [(method, ratio) for method in spec.methods for ratio in spec.ratios]
    candidates = {}
    for method, ratio in tqdm(jobs, desc="pruning", unit="model"):
        try:
            candidates.update(prune.sweep(reference, example, [ratio], method=method, seed=spec.seed,
                                          finetune=finetune))
        except ValueError as error:
            raise ConfigError("prune", f"{method} at {ratio}: {error}") from None
    return candidates


def _cam_layers(reference: nn.Module) -> tuple[str, ...]:
    layers = getattr(reference, "cam_layers", None)
    if not layers:
        raise ConfigError("layers", f"missing, and {type(reference).__name__} has no 'cam_layers'; list the "
                          "layers to explain, e.g. [features.17], from model.named_modules().")
    return tuple(layers)


def _check_layers(models: dict[str, nn.Module], layers: Sequence[str]) -> None:
    for name, model in models.items():
        modules = [module for module, _ in model.named_modules() if module]
        missing = [layer for layer in layers if layer not in modules]
        if missing:
            close = difflib.get_close_matches(missing[0], modules, n=3, cutoff=0.3)
            raise ConfigError("layers", f"{missing} not in the {name} model ({type(model).__name__}); use "
                              f"qualified names from model.named_modules(), e.g. {close or modules[-3:]}.")


def _report(ds: xr.Dataset, results: Path, overwrite: bool, pe_threshold: float, max_accuracy_drop: float) -> None:
    """Save ``ds`` to ``results``, draw the figures beside it, print the tables."""
    results.parent.mkdir(parents=True, exist_ok=True)
    save(ds, results, overwrite=overwrite)
    figures = _write_figures(ds, results.parent)
    print(_model_table(ds, pe_threshold, max_accuracy_drop))
    print()
    print(_recommendation(ds, pe_threshold, max_accuracy_drop))
    print(f"\nWrote {results} and {len(figures)} figures in {results.parent}.")
    degenerate = int(ds[schema.DEGENERATE].sum())
    if degenerate:
        print(f"Note: {degenerate} of {ds[schema.DEGENERATE].size} maps are degenerate (constant, no CAM "
              "signal) and count in the scores; inspect ds['degenerate'] in results.nc.")


def _write_figures(ds: xr.Dataset, folder: Path) -> list[Path]:
    """For each layer and CAM method: PE/accuracy vs ratio, drop scatter, a heatmap grid per pruner."""
    pruners = [p for p in dict.fromkeys(ds[schema.PRUNER].values.tolist()) if p != schema.UNPRUNED]
    jobs = []
    for layer in ds[schema.LAYER].values.tolist():
        for method in ds[schema.CAM].values.tolist():
            where = {"layer": layer, "method": method}
            jobs += [(f"pe_vs_ratio_{layer}_{method}.png", plot.pe_vs_ratio, where),
                     (f"drop_scatter_{layer}_{method}.png", plot.drop_scatter, where)]
            jobs += [(f"heatmaps_{pruner}_{layer}_{method}.png", plot.heatmap_grid, {**where, "pruner": pruner})
                     for pruner in pruners]
    for name, draw, kwargs in tqdm(jobs, desc="figures", unit="figure"):
        draw(ds, path=folder / name, **kwargs)
    return [folder / name for name, _, _ in jobs]


def _model_table(ds: xr.Dataset, pe_threshold: float, max_accuracy_drop: float) -> str:
    """One row per model: pruner, ratio, params, MACs, accuracy, PE per layer and method, verdict."""
    verdicts = assess(ds, pe_threshold, max_accuracy_drop)
    places = [(layer, method) for layer in ds[schema.LAYER].values.tolist()
              for method in ds[schema.CAM].values.tolist()]
    single_method = ds.sizes[schema.CAM] == 1
    header = (["model", "pruner", "ratio", "params", "MACs", "accuracy"]
              + [f"PE {layer}" if single_method else f"PE {layer} {method}" for layer, method in places]
              + ["trustworthy?"])
    rows = []
    for position, model in enumerate(ds[schema.MODEL].values.tolist()):
        at = verdicts.sel(model=model)
        coords = ds[schema.MODEL].sel(model=model).coords
        if position == 0:
            verdict = "(reference)"
        elif bool(at["trustworthy"].all()):
            verdict = "yes"
        else:
            verdict = "no: " + "+".join(name for name, key in (("PE", "pe_ok"), ("accuracy", "accuracy_ok"))
                                        if not bool(at[key].all()))
        rows.append([model, str(coords[schema.PRUNER].values), f"{float(coords[schema.RATIO]):.2f}",
                     f"{int(coords[schema.PARAMS]):,}", f"{int(coords[schema.MACS]) / 1e6:.2f}M",
                     f"{float(coords[schema.ACCURACY]):.3f}"]
                    + [f"{float(at['pe'].sel({schema.LAYER: layer, schema.CAM: method})):.3f}"
                       for layer, method in places] + [verdict])
    title = (f"Trustworthy = PE >= {pe_threshold:g} at every layer and CAM method, and accuracy drop "
             f"<= {max_accuracy_drop:g} against the reference.")
    return title + "\n" + _format(header, rows)


def _recommendation(ds: xr.Dataset, pe_threshold: float, max_accuracy_drop: float) -> str:
    """The largest trusted ratio of each pruner, layer and CAM method, or why there is none."""
    try:
        table = recommend(ds, pe_threshold, max_accuracy_drop)
    except ValueError as error:  # e.g. candidates without ratios
        return f"No recommendation: {error}"
    rows = []
    for row in table.itertuples():
        trusted = f"{row.ratio:.2f}" if row.model is not None else "none (do not prune)"
        if row.fails_on:
            shown, hidden = row.failing_classes[:SHOWN_CLASSES], len(row.failing_classes) - SHOWN_CLASSES
            classes = (", ".join(shown) + (f" (+{hidden} more)" if hidden > 0 else "")) or "none below the threshold"
            failure = f"{row.first_failure:.2f} on {row.fails_on}; classes {classes}"
        else:
            failure = "never (every ratio passes)"
        rows.append([row.pruner, row.layer, row.method, trusted, failure])
    title = "Largest trusted ratio (every ratio up to it passes; see pescore_nb.recommend):"
    return title + "\n" + _format(["pruner", "layer", "CAM", "trusted ratio", "first failure"], rows)


def _format(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table, columns padded to their widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)
