"""How much do the demo's PE gaps move between fine-tuning seeds, and what would a run with some of them trust?

For one fine-tuning recipe (schedule, images, epochs, lr, batch) and a list of seeds, prunes the cached zoo
VGG (``zoo.load("vgg", "shapes")``) with l2, senpis, taylor and random at ``--ratios`` and fine-tunes every
copy plus ``control:finetune`` once per seed (``prune.sweep(..., seeds=..., workers=...)``), evaluates
Grad-CAM++ at features.16 on the 600 test images as the demo does (heatmaps 32x32, float16; the
randomised copy too, and the twin, zoo seed 1, when it is cached, so the layer checks can run), and prints:

- per seed: the control's accuracy and class-weighted PE, each candidate's accuracy and its
  class-weighted PE gap PE(control, s) - PE(candidate, s) to the control of the same seed;
- the control's PE standard deviation over seeds (sample SD), and at each ratio the pooled
  between-seed SD of the gaps: sqrt of the mean over pruners of the per-pruner sample variances;
- the times (pruning + fine-tuning, evaluation), with the load average.

``--json`` writes those per-seed numbers; ``--save`` keeps the Dataset (``pescore_nb.save``) so that
``--combine`` can later recombine seeds (of one or several runs of one recipe) without rerunning: for
each ``--bases`` b it selects the seeds b .. b + n - 1 (``--n-seeds``) and prints ``pescore_nb.recommend``
of those models, as ``pescore demo --seed b`` would compute it from the same models. ``--predict`` gives, from the per-seed gaps of a
saved run, the chance that a run with ``--n-seeds`` seeds trusts a candidate (Monte Carlo: seed means
drawn from a normal with the measured mean and SD, the image part of the bound as measured).

    python benchmarks/seed_spread.py --schedule cosine --ratios 0.1 --seeds 0,1,2,3,4 \\
        --save /tmp/spread-cosine.nc --json /tmp/spread-cosine.json
    python benchmarks/seed_spread.py --combine /tmp/design1.nc --bases 0,7 --n-seeds 3
    python benchmarks/seed_spread.py --combine /tmp/spread-cosine.nc --predict taylor@0.10 --n-seeds 3

Set ``PESCORE_CACHE`` to use a model cache other than the default.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import time

import numpy as np
import pandas as pd
import xarray as xr

PRUNERS = ("l2", "senpis", "taylor", "random")
LAYER = "features.16"


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f}"


def make(args: argparse.Namespace) -> xr.Dataset:
    """Sweep, fine-tune and evaluate; the Dataset of every seed's models plus the twin and randomised copy."""
    import torch

    from pescore_nb import data, evaluate, prune, schema, specs, zoo
    from pescore_nb.cli import DEMO_HEATMAPS
    from pescore_nb.controls import as_control, randomised

    torch.set_num_threads(args.threads)  # the evaluation's; each fine-tuning job runs on one thread anyway
    reference = zoo.load("vgg", "shapes", progress=False)
    try:  # the twin only feeds the layer checks of --combine: used when cached, never trained here
        twin = zoo.load("vgg", "shapes", seed=1, progress=False, train_if_missing=False)
    except FileNotFoundError:
        twin = None
        print("no cached twin (zoo seed 1): left out", flush=True)
    train = data.builtin("shapes", "train")
    test = data.builtin("shapes", "test")
    finetune = prune.Finetune(specs.first_images(train, args.images), epochs=args.epochs, lr=args.lr,
                              batch_size=args.batch, schedule=args.schedule)
    seeds = [int(s) for s in args.seeds.split(",")]
    ratios = [float(r) for r in args.ratios.split(",")]
    print(f"recipe: {args.schedule}, {args.images} images, {args.epochs} epochs, Adam {args.lr:g}, batch "
          f"{args.batch}; ratios {ratios}; seeds {seeds}; workers {args.workers}; torch threads "
          f"{torch.get_num_threads()}; {load_text()}", flush=True)
    start = time.perf_counter()
    candidates = prune.sweep(reference, train[0][0][None], ratios, pruner=args.pruners.split(","), seeds=seeds,
                             finetune=finetune, data=train, workers=args.workers, progress=True,
                             controls=not args.no_control)
    swept = time.perf_counter() - start
    print(f"pruned and fine-tuned {len(candidates)} models in {swept:.0f} s ({load_text()})", flush=True)
    candidates[schema.RANDOMISED_PREFIX + LAYER] = randomised(reference, LAYER)
    if twin is not None:
        candidates[schema.CONTROL_TWIN] = as_control(twin, {"twin_of": "reference"})
    start = time.perf_counter()
    ds = evaluate(reference, candidates, test, layers=[LAYER], cams=("gradcam++",), **DEMO_HEATMAPS)
    evaluated = time.perf_counter() - start
    print(f"evaluated {len(candidates)} models in {evaluated:.0f} s ({load_text()})", flush=True)
    ds.attrs["seed_spread_recipe"] = json.dumps({"schedule": args.schedule, "images": args.images,
                                                 "epochs": args.epochs, "lr": args.lr, "batch": args.batch,
                                                 "sweep_s": round(swept), "evaluate_s": round(evaluated)})
    return ds


def per_seed(ds: xr.Dataset) -> pd.DataFrame:
    """One row per seeded model: seed, group, pruner, ratio, role, accuracy, class-weighted PE, gap to its control."""
    from pescore_nb import schema, score, structure

    pe = score(ds).sel({schema.LAYER: LAYER, schema.CAM: "gradcam++"}).values.astype(float)
    names = ds[schema.MODEL].values.astype(str)
    seeds = structure.seeds(ds)
    rows = pd.DataFrame({"model": names, "group": [structure.group_name(n) for n in names], "seed": seeds,
                         "role": structure.roles(ds), "pruner": ds[schema.PRUNER].values.astype(str),
                         "ratio": ds[schema.RATIO].values.astype(float),
                         "accuracy": ds[schema.ACCURACY].values.astype(float), "pe": pe})
    rows = rows[rows.seed != schema.NO_SEED]
    control = rows[rows.group == schema.CONTROL_FINETUNE].set_index("seed")["pe"]
    rows = rows.assign(gap=control.reindex(rows.seed).values - rows.pe.values)
    return rows.reset_index(drop=True)


def report(rows: pd.DataFrame) -> dict:
    """Print the per-seed table and the spreads; return them as a JSON-ready dict."""
    from pescore_nb import schema

    control = rows[rows.group == schema.CONTROL_FINETUNE].set_index("seed")
    candidates = rows[rows.role == schema.CANDIDATE]
    groups = list(dict.fromkeys(candidates.group))
    table = candidates.pivot(index="seed", columns="group", values="gap")[groups]
    accuracy = candidates.pivot(index="seed", columns="group", values="accuracy")[groups]
    shown = pd.DataFrame({"control acc.": control.accuracy, "control PE": control.pe})
    print("\nPer seed: the control's accuracy and PE; each candidate's gap PE(control) - PE(candidate)")
    print(pd.concat([shown, table], axis=1).to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nCandidates' accuracy per seed")
    print(accuracy.to_string(float_format=lambda v: f"{v:.3f}"))
    summary = {"control_pe_sd": float(control.pe.std(ddof=1)) if len(control) > 1 else float("nan"),
               "control_pe_mean": float(control.pe.mean()), "control_accuracy_mean": float(control.accuracy.mean()),
               "control_accuracy_min": float(control.accuracy.min()), "pooled_gap_sd": {}, "gap_mean": {},
               "gap_sd": {}}
    for ratio in sorted(set(candidates.ratio)):
        at = candidates[candidates.ratio == ratio]
        variances = at.groupby("pruner").gap.var(ddof=1)
        summary["pooled_gap_sd"][f"{ratio:.2f}"] = float(np.sqrt(variances.mean()))
    for group in groups:
        gaps = table[group]
        summary["gap_mean"][group] = float(gaps.mean())
        summary["gap_sd"][group] = float(gaps.std(ddof=1)) if len(gaps) > 1 else float("nan")
    print(f"\ncontrol PE: mean {summary['control_pe_mean']:.3f}, SD over seeds {summary['control_pe_sd']:.3f}; "
          f"control accuracy mean {summary['control_accuracy_mean']:.3f} (min {summary['control_accuracy_min']:.3f})")
    for ratio, sd in summary["pooled_gap_sd"].items():
        print(f"pooled between-seed SD of the gaps at {ratio}: {sd:.3f}")
    print("gap mean / SD per candidate: " + "; ".join(
        f"{g} {summary['gap_mean'][g]:+.3f} / {summary['gap_sd'][g]:.3f}" for g in groups))
    summary["per_seed"] = rows.to_dict(orient="records")
    return summary


def recommend_for(ds: xr.Dataset, seeds: list[int]) -> pd.DataFrame:
    """``pescore_nb.recommend`` of the models of ``seeds`` and the unseeded ones (twin, randomised copy)."""
    from pescore_nb import recommend, schema, structure

    model_seeds = structure.seeds(ds)
    keep = [m for m, s in zip(ds[schema.MODEL].values.astype(str), model_seeds) if s == schema.NO_SEED or s in seeds]
    return recommend(ds.sel({schema.MODEL: keep}))


def load_all(paths: list[str]) -> xr.Dataset:
    """The Datasets saved by several runs of one recipe as one: their models side by side, each name once
    (a model made twice, e.g. the randomised copy, is the same model: the first is kept)."""
    from pescore_nb import load, schema

    parts, seen = [], set()
    for path in paths:
        ds = load(path, lazy=False)
        print(f"{path}: {ds.attrs.get('seed_spread_recipe', '')}")
        names = [m for m in ds[schema.MODEL].values.astype(str).tolist() if m not in seen]
        seen.update(names)
        if names:
            parts.append(ds.sel({schema.MODEL: names}))
    if len(parts) == 1:
        return parts[0]
    return xr.concat(parts, dim=schema.MODEL, data_vars="minimal", coords="minimal", compat="override",
                     combine_attrs="override")


def combine(args: argparse.Namespace) -> None:
    ds = load_all(args.combine.split(","))
    rows = per_seed(ds)
    if args.predict:
        predict(ds, rows, args.predict, args.n_seeds)
        return
    for base in [int(b) for b in args.bases.split(",")]:
        seeds = list(range(base, base + args.n_seeds))
        table = recommend_for(ds, seeds)
        print(f"\n=== base seed {base}: seeds {seeds} ===")
        report(rows[rows.seed.isin(seeds)])
        print(table[["pruner", "ratio", "bound", "n_seeds", "first_failure", "fails_on", "accuracy_only_ratio",
                     "control_pe", "twin_pe", "layer_usable"]].to_string(float_format=lambda v: f"{v:.3f}"))
        bounds = bounds_by_group(ds, seeds)
        print("bounds: " + "; ".join(f"{g} {b:.3f}" for g, b in bounds.items()))
        print(f"trusted (base {base}): " + " / ".join(f"{r.pruner} {r.ratio:.2f}" for r in table.itertuples())
              + f"; flagged layers: {sum(not u for u in table.layer_usable)}")


def bounds_by_group(ds: xr.Dataset, seeds: list[int]) -> dict[str, float]:
    """The seed-aware bound of every candidate group on ``seeds``, in Dataset order."""
    from pescore_nb import assess, schema, structure

    model_seeds = structure.seeds(ds)
    keep = [m for m, s in zip(ds[schema.MODEL].values.astype(str), model_seeds) if s == schema.NO_SEED or s in seeds]
    verdicts = assess(ds.sel({schema.MODEL: keep}))
    names = verdicts[schema.MODEL].values.astype(str)
    bound = verdicts["bound"].sel({schema.LAYER: LAYER, schema.CAM: "gradcam++"}).values
    return {n: float(b) for n, b in zip(names, bound) if not np.isnan(b)}


def predict(ds: xr.Dataset, rows: pd.DataFrame, group: str, n_seeds: int, draws: int = 200_000) -> None:
    """Chance that a run with ``n_seeds`` seeds trusts ``group`` on PE (bound <= margin), from the measured seeds.

    The bound is ``d + t(nu) * sqrt(s2 / S + V)`` (:func:`pescore_nb.trust.seed_bound`). The seed means are
    drawn from a normal with the measured mean and SD of ``group``'s gaps; ``V``, the image part, is the
    mean of its value over every subset of ``n_seeds`` measured seeds (it barely varies). Also counts the
    subsets of the measured seeds whose actual bound passes.
    """
    from scipy import stats

    from pescore_nb import schema, structure

    seeds = sorted(set(rows.seed))
    by_seed = rows.set_index(["group", "seed"]).model
    per_image = ds[schema.PE].sel({schema.LAYER: LAYER, schema.CAM: "gradcam++"}).astype(float)
    gaps = np.stack([per_image.sel({schema.MODEL: by_seed[(schema.CONTROL_FINETUNE, s)]}).values
                     - per_image.sel({schema.MODEL: by_seed[(group, s)]}).values for s in seeds])  # (S, N)
    labels = ds[schema.LABEL].values
    classes, counts = np.unique(labels, return_counts=True)
    weights = structure.weights_by_class(labels, structure.class_weight_rule(ds, None)).values
    members = labels[None, :] == classes[:, None]
    means = (gaps @ members.T / counts) @ weights                        # per-seed class-weighted mean gaps
    mean, sd = means.mean(), means.std(ddof=1)
    image_parts, hits = [], 0
    subsets = list(itertools.combinations(range(len(seeds)), n_seeds))
    for subset in subsets:
        averaged = gaps[list(subset)].mean(0)
        deviations = (averaged[None, :] - (averaged @ members.T / counts)[:, None]) * members
        image_parts.append(float((weights ** 2 * (deviations ** 2).sum(1) / (counts - 1) / counts).sum()))
        hits += bounds_by_group(ds, [seeds[i] for i in subset])[group] <= structure.MARGIN + 1e-9
    v = float(np.mean(image_parts))
    free = len(labels) - len(classes)
    drawn = np.random.default_rng(0).normal(mean, sd, size=(draws, n_seeds))
    d, s2 = drawn.mean(1), drawn.var(1, ddof=1) / n_seeds
    total = s2 + v
    nu = total ** 2 / (s2 ** 2 / (n_seeds - 1) + v ** 2 / free)
    bound = d + stats.t.ppf(structure.LEVEL, nu) * np.sqrt(total)
    chance = float((bound <= structure.MARGIN).mean())
    print(f"{group}: per-seed gaps {np.round(means, 3).tolist()} (mean {mean:+.3f}, SD {sd:.3f}); image part V "
          f"{v:.2e} (sqrt {np.sqrt(v):.4f})")
    print(f"chance that a run with {n_seeds} seeds trusts {group} on PE (bound <= {structure.MARGIN}): {chance:.1%} "
          f"(normal seed means, {draws} draws); subsets of {n_seeds} measured seeds that pass: {hits}/{len(subsets)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine", "linear"))
    parser.add_argument("--images", type=int, default=1500, help="first training images fine-tuned on")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ratios", default="0.1")
    parser.add_argument("--pruners", default=",".join(PRUNERS), help="default: l2,senpis,taylor,random")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the evaluation (1: two threads on a shared machine mostly wait)")
    parser.add_argument("--no-control", action="store_true",
                        help="leave control:finetune out (another saved run of the same seeds has it; see --combine)")
    parser.add_argument("--save", help="keep the Dataset here (.nc) for --combine")
    parser.add_argument("--json", help="write the per-seed numbers and spreads here")
    parser.add_argument("--combine", help="Datasets saved with --save (comma-separated, one recipe): recombine "
                        "their seeds instead of running")
    parser.add_argument("--bases", default="0,7", help="with --combine: base seeds, each with --n-seeds seeds")
    parser.add_argument("--n-seeds", type=int, default=3)
    parser.add_argument("--predict", help="with --combine: a candidate group, e.g. taylor@0.10")
    args = parser.parse_args()
    if args.combine:
        combine(args)
        return
    start = time.perf_counter()
    ds = make(args)
    if args.save:
        from pescore_nb import save

        save(ds, args.save, overwrite=True)
    if args.no_control:
        print("no control:finetune in this run: combine it with a run that has it (--combine) for the gaps")
        return
    summary = report(per_seed(ds))
    elapsed = time.perf_counter() - start
    print(f"\nelapsed {elapsed:.0f} s ({load_text()})")
    if args.json:
        summary.update(recipe=json.loads(ds.attrs["seed_spread_recipe"]), elapsed_s=round(elapsed))
        with open(args.json, "w") as file:
            json.dump(summary, file, indent=1, default=float)


if __name__ == "__main__":
    main()
