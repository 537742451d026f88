"""The command line ``pescore`` (also ``python -m pescore_nb``): the whole job, headless.

    pescore demo [--model vgg|vit] [--out DIR] [--seed BASE] [--quick] [--raw] [--sp2ps] [--overwrite]
        Loads (or trains once) the zoo's VGG (``--model vit``: its ViT) on ``shapes`` and its twin
        (zoo seed 1), prunes it with ``l2``, ``senpis``, ``taylor`` and ``random`` at 0.05 ... 0.7 (SeNPIS-Faster and Taylor
        read the training split), fine-tunes each pruned copy and the unpruned ``control:finetune``
        with one recipe (Adam, learning rate annealed to zero), once per fine-tuning seed: the
        ``DEMO_SEEDS`` seeds BASE, BASE + 1, ... (``--seed``, default 0; it never changes the reference
        or the twin), in as many worker processes as the machine has cores (``--raw``: no fine-tuning
        and no such control), adds a cascading-randomised copy per layer, scores Grad-CAM++ at the
        model's ``cam_layers`` on the test images, and writes DIR (default ``./pescore-demo``).
        ``--quick``: three ratios, less fine-tuning data, 120 test images, ``QUICK_SEEDS`` seeds, and
        ``QUICK_SAMPLES_PER_CLASS`` images of each class for SeNPIS-Faster and Taylor to rank on.
    pescore run CONFIG.yaml [--overwrite] [--trust-pickle] [--sp2ps]
        The same for your models and data; the config is described in :mod:`pescore_nb.runconfig`
        (``examples/config.yaml`` is a sample that runs offline). A config names Python factories
        that are imported and run, like any Python code.
    pescore cache export DIR | pescore cache import DIR
        Copy the zoo's trained models into DIR (training the ones the notebooks and the demo load if
        missing), and from DIR into another machine's cache, checked against DIR's checksums
        (:mod:`pescore_nb.model_cache`): a class's machines then never train.

Both write ``results.nc`` (read it back with ``pescore_nb.load``), ``report.html`` (one
self-contained page: settings, models, verdicts, figures, per-class results) and PNG figures, and print a
table of every model group (role, pruner, ratio, seeds, params, MACs, accuracy, PE, verdict), the
largest trusted ratio of each pruner by the rule of :mod:`pescore_nb.trust` beside what accuracy
alone would trust, and the findings: the layer checks, and candidates that accuracy cannot tell
apart but PE can. The output is checked before any work; an existing ``results.nc`` is never
replaced without ``--overwrite``. Exit status: 0 when done; 2 for bad input (an argument, a config
value, a model, a layer or the data), with one line on stderr naming the problem and the fix.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import Dataset

from . import __version__, data, prune, runconfig, schema, specs, structure, wording, zoo
from . import model_cache
from .cam import LAYER_FREE, CamEngine
from .controls import as_control, randomised
from .evaluation import evaluate
from .specs import ConfigError, FinetuneSpec, PruneSpec
from .scores import DegenerateMapWarning
from .sp2ps import Sp2PSConfig
from .store import save
from .trust import NOT_ASSESSABLE, assess, attention_gaps, layer_checks, recommend

DEMO_PRUNERS = ("l2", "senpis", "taylor", "random")
DEMO_PRUNE = PruneSpec(pruners=DEMO_PRUNERS, ratios=(0.05, 0.1, 0.2, 0.3, 0.5, 0.7))
QUICK_PRUNE = PruneSpec(pruners=DEMO_PRUNERS, ratios=(0.1, 0.2, 0.5))
QUICK_IMAGES = 120
DEMO_FINETUNE = FinetuneSpec(epochs=1, lr=1e-3, batch_size=32, schedule="cosine")  # benchmarks/demo_design.md
DEMO_FINETUNE_IMAGES, QUICK_FINETUNE_IMAGES = 1500, 300  # the first training images it runs on
SHOWN_CLASSES = 3  # failing classes named in the recommendation table
DEMO_HEATMAPS: dict[str, Any] = {"heatmap_size": (32, 32),  # the CAMs are coarser: nothing lost
                                 "heatmap_dtype": "float16"}
DEMO_SEEDS = 4  # fine-tuning seeds of every candidate and of control:finetune: --seed, --seed + 1, ...
QUICK_SEEDS = 3  # benchmarks/demo_design.md: 4 seeds reproduce the verdict; --quick keeps 3 to stay fast
DEMO_SAMPLES_PER_CLASS, QUICK_SAMPLES_PER_CLASS = 5, 3  # images of each class SeNPIS and Taylor rank on
DEMO_CAMS = ("gradcam++",)
DEMO_MODELS = ("vgg", "vit")  # the zoo architectures --model takes, the default first
REPORT_FILE = "report.html"
MAX_FILE_NAME = 255  # bytes: the limit of common file systems
USER_ERRORS = (ConfigError, ValueError, TypeError, OSError, ImportError)  # bad input: one line, exit 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pescore`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateMapWarning)  # every figure would repeat it; see _report
            args.command(args)
    except USER_ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"pescore: error: {message}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pescore", description="PE-score of pruned CNNs: does a pruned "
                                     "model still look at the same pixels, with the same confidence?")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="prune and score the zoo's VGG (or ViT) on the built-in shapes data")
    demo.add_argument("--model", choices=DEMO_MODELS, default=DEMO_MODELS[0],
                      help="the zoo model to prune: a small VGG (default) or a small vision transformer")
    demo.add_argument("--out", default="pescore-demo", help="output folder (default: ./pescore-demo)")
    demo.add_argument("--seed", type=int, default=0, metavar="BASE",
                      help=f"first fine-tuning seed: the models are made with the {DEMO_SEEDS} seeds BASE, BASE+1, ... "
                      "(default 0); the reference and the twin stay zoo seeds 0 and 1")
    demo.add_argument("--quick", action="store_true",
                      help=f"{len(QUICK_PRUNE.ratios)} ratios, {QUICK_FINETUNE_IMAGES} fine-tuning and {QUICK_IMAGES} "
                      f"test images, {QUICK_SEEDS} seeds, {QUICK_SAMPLES_PER_CLASS} images of each class to rank "
                      "channels on")
    demo.add_argument("--raw", action="store_true", help="do not fine-tune the pruned copies")
    demo.set_defaults(command=_demo)
    run = commands.add_parser("run", help="score your own models and data, as a YAML config says")
    run.add_argument("config", help="the YAML config (see examples/config.yaml)")
    run.add_argument("--trust-pickle", action="store_true",
                     help="allow 'pickle:' models (loading a pickle runs code from the file)")
    run.set_defaults(command=_run)
    cache = commands.add_parser("cache", help="move the zoo's trained models between machines (e.g. for a class)")
    moves = cache.add_subparsers(required=True, metavar="ACTION")
    export = moves.add_parser("export", help="train the models the notebooks and the demo load if missing, and "
                              "copy the model cache into DIR with a manifest of checksums")
    export.add_argument("folder", metavar="DIR", help="a new or empty folder")
    export.set_defaults(command=lambda args: print(f"Exported {len(model_cache.export_models(args.folder))} "
                                                   f"models to {args.folder}."))
    load = moves.add_parser("import", help="check DIR's models against its manifest and copy them into this "
                            "machine's model cache ($PESCORE_CACHE or ~/.cache/pescore_nb)")
    load.add_argument("folder", metavar="DIR", help="a folder made by `pescore cache export`")
    load.set_defaults(command=lambda args: print(f"Imported {len(model_cache.import_models(args.folder))} "
                                                 f"models into {zoo.default_cache_dir()}."))
    for command in (demo, run):
        command.add_argument("--overwrite", action="store_true", help="replace an existing results.nc")
        command.add_argument("--sp2ps", action="store_true", help="also store the Sp2PS score beside PE")
    return parser


def _demo(args: argparse.Namespace) -> None:
    results = Path(args.out).expanduser().resolve() / runconfig.RESULTS_FILE
    spec = QUICK_PRUNE if args.quick else DEMO_PRUNE
    _check_outputs(results, spec.pruners, zoo.cam_layers(args.model, "shapes"), DEMO_CAMS, args.overwrite, "--out")
    reference = zoo.load(args.model, "shapes")
    test = data.shapes(QUICK_IMAGES, split="test") if args.quick else data.builtin("shapes", "test")
    train = data.builtin("shapes", "train")
    finetune = None
    if not args.raw:
        images = QUICK_FINETUNE_IMAGES if args.quick else DEMO_FINETUNE_IMAGES
        finetune = DEMO_FINETUNE.build(specs.first_images(train, images))
    seeds, samples = (QUICK_SEEDS, QUICK_SAMPLES_PER_CLASS) if args.quick else (DEMO_SEEDS, DEMO_SAMPLES_PER_CLASS)
    candidates = prune.sweep(reference, train[0][0][None], spec.ratios, pruner=spec.pruners, seed=args.seed,
                             seeds=seeds, finetune=finetune, data=train, samples_per_class=samples, progress=True,
                             workers=_cores())
    candidates.update(_controls(reference, reference.cam_layers, zoo.load(args.model, "shapes", seed=1)))
    ds = evaluate(reference, candidates, test, layers=reference.cam_layers, cams=DEMO_CAMS,
                  sp2ps_config=Sp2PSConfig() if args.sp2ps else None, **DEMO_HEATMAPS)
    _report(ds, results, args.overwrite)


def _cores() -> int:
    """The cores this process may run on: the demo's worker processes."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run(args: argparse.Namespace) -> None:
    config = runconfig.read(args.config, trust_pickle=args.trust_pickle)
    reference = config.reference.build()
    layers = config.layers or _cam_layers(reference)
    _check_outputs(config.results, config.prune.pruners if config.prune is not None else (), layers, config.cams,
                   args.overwrite, "output")
    _check_layers({schema.REFERENCE: reference}, layers)
    dataset = config.data.build()
    _check_maps(reference, layers, config.cams, config.reshape_transform, dataset[0][0][None], config.device)
    if config.prune is not None:
        train = config.prune.data.build() if config.prune.data is not None else None
        classes = list(getattr(dataset, "classes"))
        if train is not None and list(getattr(train, "classes")) != classes:
            raise ConfigError("prune.data", f"its {len(getattr(train, 'classes'))} classes are not the data's "
                              f"{len(classes)} classes in the same order; give images of the same "
                              "classes (for folders: the same sub-folder names).")
        finetune = None
        if config.prune.finetune is not None:
            if train is None:
                raise ConfigError("prune.data", "missing; prune.finetune trains on it.")
            finetune = config.prune.finetune.build(train, config.device)
        candidates = _sweep(reference, train, config.prune, finetune, example=dataset[0][0][None])
    else:
        candidates = {name: spec.build() for name, spec in config.candidates.items()}
    candidates.update(_controls(reference, layers, config.twin.build() if config.twin else None))
    _check_layers(candidates, layers)
    ds = evaluate(reference, candidates, dataset, layers=layers, cams=config.cams, batch_size=config.batch_size,
                  device=config.device, config=config.pe, reshape_transform=config.reshape_transform,
                  sp2ps_config=Sp2PSConfig() if config.sp2ps or args.sp2ps else None,
                  heatmap_size=config.heatmap_size, heatmap_dtype=config.heatmap_dtype)
    _report(ds, config.results, args.overwrite, pe_threshold=config.pe_threshold,
            max_accuracy_drop=config.max_accuracy_drop)


def _check_outputs(results: Path, pruners: Sequence[str], layers: Sequence[str], cams: Sequence[str],
                   overwrite: bool, field: str) -> None:
    """Before any work: every file the job will write (``results``, the report and the figures of
    :func:`_figure_plan`) must have a usable name, must not exist (without ``--overwrite``), and its
    folder must be writable."""
    folder = results.parent
    names = [results.name, REPORT_FILE] + [name for name, _, _ in _figure_plan(pruners, layers, cams)]
    too_long = [name for name in names if len(name.encode()) > MAX_FILE_NAME]
    if too_long:
        raise ConfigError(field, f"the file name {too_long[0][:60]}... would be {len(too_long[0].encode())} bytes "
                          f"(at most {MAX_FILE_NAME}); shorten the pruner or layer names it is built from.")
    existing = [name for name in names if (folder / name).exists()]
    if existing and not overwrite:
        raise ConfigError(field, f"{folder} already holds {', '.join(existing[:3])}"
                          f"{f' and {len(existing) - 3} more' if len(existing) > 3 else ''}; pescore never replaces "
                          f"results silently: choose another {field}, or pass --overwrite.")
    if results.is_dir():
        raise ConfigError(field, f"{results} is a folder; choose an output folder without a results.nc folder in it.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{results.name}.write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(field, f"cannot write in {folder} ({error.strerror or error}); choose a "
                          "folder you can write to.") from None


def _sweep(reference: nn.Module, dataset: Dataset | None, spec: PruneSpec, finetune: prune.Finetune | None = None,
           example: torch.Tensor | None = None) -> dict[str, nn.Module]:
    """Every pruner of ``spec`` at every ratio (plus ``control:finetune`` when fine-tuning), with a progress bar.

    ``dataset`` feeds the data-driven pruners (senpis, taylor): training images, never the evaluation
    data (``None`` when no pruner needs it). ``example``, the ``(1, C, H, W)`` input traced to prune and
    count MACs, defaults to ``dataset``'s first image.
    """
    if example is None:
        if dataset is None:
            raise ValueError("give an example input, or a dataset to take its first image from.")
        example = dataset[0][0][None]
    try:
        return prune.sweep(reference, example, spec.ratios, pruner=spec.pruners, seed=spec.seed, seeds=spec.seeds,
                           finetune=finetune, data=dataset, progress=True, workers=spec.workers)
    except ValueError as error:
        raise ConfigError("prune", str(error)) from None


def _controls(reference: nn.Module, layers: Sequence[str], twin: nn.Module | None) -> dict[str, nn.Module]:
    """``control:twin`` (when given) and one ``control:randomised@<layer>`` per layer."""
    controls = {schema.RANDOMISED_PREFIX + layer: randomised(reference, layer) for layer in layers}
    if twin is not None:
        controls[schema.CONTROL_TWIN] = as_control(twin, {"twin_of": "reference"})
    return controls


def _cam_layers(reference: nn.Module) -> tuple[str, ...]:
    layers = getattr(reference, "cam_layers", None)
    if not layers:
        raise ConfigError("layers", f"missing, and {type(reference).__name__} has no 'cam_layers'; list the "
                          "layers to explain, e.g. [features.16], from model.named_modules().")
    return tuple(layers)


def _check_maps(reference: nn.Module, layers: Sequence[str], cams: Sequence[str], reshape_transform,
                image: torch.Tensor, device: str | None) -> None:
    """Before any work: the reference's Grad-CAM of ``image`` ``(1, C, H, W)`` at every layer, so a layer
    whose output is not ``(N, C, h, w)``, or a ``reshape_transform`` that does not fit it, is refused
    before pruning (every CAM method reads the layer the same way; none is made when all of ``cams``
    ignore the layers)."""
    if all(method in LAYER_FREE for method in cams):
        return
    try:
        CamEngine(reference, layers, "gradcam", device=device, reshape_transform=reshape_transform)(image)
    except ValueError as error:
        field = "layers" if reshape_transform is None else "reshape_transform"
        raise ConfigError(field, f"the reference's maps of the first image fail: {error}") from None


def _check_layers(models: dict[str, nn.Module], layers: Sequence[str]) -> None:
    for name, model in models.items():
        modules = [module for module, _ in model.named_modules() if module]
        missing = [layer for layer in layers if layer not in modules]
        if missing:
            close = difflib.get_close_matches(missing[0], modules, n=3, cutoff=0.3)
            raise ConfigError("layers", f"{missing} not in the {name} model ({type(model).__name__}); use "
                              f"qualified names from model.named_modules(), e.g. {close or modules[-3:]}.")


def _report(ds: xr.Dataset, results: Path, overwrite: bool, **rule: Any) -> None:
    """Save ``ds`` to ``results``, draw the figures beside it, print the tables and the findings."""
    save(ds, results, overwrite=overwrite)
    figures = _write_figures(ds, results.parent)
    from .html_report import report

    page = report(ds, results.parent / REPORT_FILE, overwrite=overwrite, **rule)
    verdicts, checks = assess(ds, **rule), layer_checks(ds)
    table = recommend(ds, **rule) if structure.has_ratios(ds) else None
    print(_model_table(ds, verdicts, checks))
    print()
    print(_recommendation(table, checks) if table is not None else
          "No ratio walk: the candidates have no pruner and ratio.")
    print()
    print(_findings(ds, table, checks))
    print(f"\nWrote {results}, {page.name} and {len(figures)} figures in {results.parent}.")
    note = _degenerate_note(ds)
    if note:
        print(note)


def safe_file_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9._@+-]`` replaced by ``_`` and no leading dot,
    so names built from pruner, model or layer names never leave the output folder."""
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", name).lstrip(".")
    return cleaned or "_"


def _figure_plan(pruners: Sequence[str], layers: Sequence[str], cams: Sequence[str]) -> list[tuple[str, str, dict]]:
    """The figures written for these pruners, layers and CAM methods: ``(file name, plot function, keywords)``.
    For each layer and CAM method: PE/accuracy vs ratio and the drop scatter, and a heatmap grid per pruner."""
    plan = []
    for layer in layers:
        for cam in cams:
            where = {"layer": layer, "cam": cam}
            if pruners:
                plan += [(f"pe_vs_ratio_{layer}_{cam}.png", "pe_vs_ratio", where),
                         (f"drop_scatter_{layer}_{cam}.png", "drop_scatter", where)]
            plan += [(f"heatmaps_{pruner}_{layer}_{cam}.png", "heatmap_grid", {**where, "pruner": pruner})
                     for pruner in pruners]
    return [(safe_file_name(name), draw, kwargs) for name, draw, kwargs in plan]


def _write_figures(ds: xr.Dataset, folder: Path) -> list[Path]:
    """The figures of :func:`_figure_plan` for the Dataset's pruners (when they have ratios), layers and CAMs."""
    from tqdm.auto import tqdm

    from . import plot

    pruners = structure.pruners(ds) if structure.has_ratios(ds) else []
    plan = _figure_plan(pruners, ds[schema.LAYER].values.tolist(), ds[schema.CAM].values.tolist())
    paths = []
    for name, draw, kwargs in tqdm(plan, desc="figures", unit="figure"):
        path = folder / name
        if path.resolve().parent != folder.resolve():
            raise ValueError(f"Figure name {name!r} would leave {folder}; rename the pruner or layer.")
        getattr(plot, draw)(ds, path=path, **kwargs)
        paths.append(path)
    return paths


def _model_table(ds: xr.Dataset, verdicts: xr.Dataset, checks: xr.Dataset | None = None) -> str:
    """One row per group (a model, or its fine-tuning seeds together: the mean over them and, in
    brackets, their range): role, pruner, ratio, seeds, params, MACs, accuracy, model PE per layer and
    CAM method, verdict (on a layer flagged by ``checks``, default :func:`pescore_nb.trust.layer_checks`,
    the combined state); above it the rule and what its bound covers, below it the twin's PE as a scale."""
    table = wording.model_table(ds, verdicts, checks)
    lines = [f"Models. {wording.seeds_note(ds)}", f"Verdict rule: {wording.rule_sentence(verdicts)}.",
             _format(list(table.columns), table.values.tolist())]
    return "\n".join(lines + wording.twin_sentences(verdicts))


def _recommendation(table, checks: xr.Dataset | None = None) -> str:
    """The largest trusted ratio of each pruner, layer and CAM method, or why there is none
    (:func:`pescore_nb.wording.trusted_ratio_text`; a flagged layer's why from ``checks``, else the
    table's ``layer_usable``); the rule, what its bound covers, and the twin's PE beside the trusted groups."""
    rows = []
    for row in table.to_dict("records"):
        where = {schema.LAYER: row["layer"], schema.CAM: row["cam"]}
        trusted = wording.trusted_ratio_text(row, wording.layer_flag_of(checks, where))
        if row["fails_on"] == NOT_ASSESSABLE:
            failure = f"{row['first_failure']:.2f}: {NOT_ASSESSABLE} ({row['reason']})"
        elif row["fails_on"]:
            shown, hidden = row["failing_classes"][:SHOWN_CLASSES], len(row["failing_classes"]) - SHOWN_CLASSES
            classes = (", ".join(shown) + (f" (+{hidden} more)" if hidden > 0 else "")) or "none below their floor"
            failure = f"{row['first_failure']:.2f} on {wording.failure_text(row['fails_on'])}; classes {classes}"
        else:
            failure = "never (every ratio passes)"
        rows.append([row["pruner"], row["layer"], row["cam"], trusted.short, f"{row['accuracy_only_ratio']:.2f}",
                     failure])
    covers = wording.covers_sentence(table["n_seeds"], table.attrs["rule"])
    return "\n".join([f"Largest trusted ratio (every ratio up to it passes; see pescore_nb.trust). Rule: "
                      f"{wording.rule_words(table.attrs)}; {covers}.",
                      _format(["pruner", "layer", "CAM", "trusted ratio", "accuracy alone", "first failure"], rows)]
                     + wording.trusted_twin_sentences(table))


def _findings(ds: xr.Dataset, table, checks: xr.Dataset | None = None) -> str:
    """The closing sentences: layer checks (``checks``, by default :func:`pescore_nb.trust.layer_checks`
    of ``ds``), accuracy alone vs the rule, and candidates that accuracy can't tell apart."""
    checks = layer_checks(ds) if checks is None else checks
    lines = [wording.layer_rule_sentence(checks.attrs)]
    several_cams = checks.sizes[schema.CAM] > 1
    for layer in checks[schema.LAYER].values.tolist():
        for cam in checks[schema.CAM].values.tolist():
            check = checks.sel({schema.LAYER: layer, schema.CAM: cam})
            lines.append(wording.layer_check_sentence(check, wording.place_name(layer, cam, several_cams)))
    if table is not None:
        for row in table.to_dict("records"):
            flag = wording.layer_flag_of(checks, {schema.LAYER: row["layer"], schema.CAM: row["cam"]})
            accurate = f"up to {row['accuracy_only_ratio']:.2f}" if row["accuracy_only_ratio"] > 0 else "none"
            lines.append(f"{row['pruner']} at {row['layer']} ({row['cam']}): accuracy alone would trust {accurate}; "
                         f"the rule says {wording.trusted_ratio_text(row, flag).sentence}.")
    gaps = attention_gaps(ds)
    if gaps.empty:
        lines.append(f"No two candidates within 1 accuracy point differ in {wording.MODEL_PE} by 0.1 or more.")
    for gap in gaps.head(3).itertuples():
        lines.append(f"{gap.model_a} and {gap.model_b} are within 1 accuracy point (accuracy {gap.accuracy_a:.1%} vs "
                     f"{gap.accuracy_b:.1%}) but their {wording.MODEL_PE} at {gap.layer} ({gap.cam}) is "
                     f"{gap.pe_a:.2f} vs {gap.pe_b:.2f}.")
    return "Findings:\n" + "\n".join(f"- {line}" for line in lines)


def _degenerate_note(ds: xr.Dataset) -> str:
    """How many maps are degenerate (constant: no CAM signal), by role, naming the groups with the
    most; "" when none is."""
    per_model = ds[schema.DEGENERATE].sum([name for name in ds[schema.DEGENERATE].dims if name != schema.MODEL])
    total = int(per_model.sum())
    if not total:
        return ""
    groups = structure.seed_groups(ds)
    roles = dict(zip(ds[schema.MODEL].values.astype(str).tolist(), structure.roles(ds)))
    counts = {group: (roles[members[0]], int(per_model.sel({schema.MODEL: members}).sum()))
              for group, members in groups.items()}
    by_role = []
    for role in schema.ROLES:
        found = sorted(((count, group) for group, (found_role, count) in counts.items()
                        if count and found_role == role), reverse=True)
        if found:
            named = ", ".join(f"{group}: {count}" for count, group in found[:SHOWN_CLASSES])
            more = f", +{len(found) - SHOWN_CLASSES} more" if len(found) > SHOWN_CLASSES else ""
            by_role.append(f"{role}s {sum(count for count, _ in found)} ({named}{more})")
    return (f"Note: {total} of {ds[schema.DEGENERATE].size} maps are degenerate (constant, no CAM signal) and count "
            f"in the scores: {'; '.join(by_role)}; inspect ds['degenerate'] in results.nc.")


def _format(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table, columns padded to their widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)
