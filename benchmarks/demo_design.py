"""Does a design of the demo (data, zoo VGG, CAM layers, training and fine-tuning) give a verdict that means something?

For one design this script trains the reference and its twin (same recipe, seed 1), makes one
cascading-randomised copy per layer (Adebayo et al. 2018: re-initialise from the classifier down
to that layer), prunes the reference with each pruner at 0.1 .. 0.9 and fine-tunes every copy, plus
``control:finetune`` (the reference put through the same fine-tuning, unpruned), evaluates all of
them with Grad-CAM++ on the test split, and prints:

- the reference's share of map energy inside the object masks, per layer;
- PE of the twin, of the control, and of each randomised copy, per layer;
- accuracy and PE of every candidate, and the trusted ratio of each pruner under the default rule
  (accuracy drop <= 0.02 and the one-sided 95 % bootstrap bound of PE(control) - PE(candidate) <= 0.05,
  walked over the ratios in order);
- the time of each step, and an estimate of the whole demo from an empty cache.

    python benchmarks/demo_design.py --design q4 [--test 600] [--ratios 0.1,0.2,...] [--threads 1]
        [--pruners l2,senpis,taylor,random] [--layers 1] [--more-twins 2,3,4]
        [--set '{"finetune": {"images": 1500, "epochs": 2, "lr": 1e-3, "batch_size": 64, "distill": false},
                 "ignored_layers": ["features.0", "classifier.1"]}']   # ignored_layers: spare the first conv

Pruning and fine-tuning go through ``prune.sweep(..., finetune=prune.Finetune(first images), data=train)``,
as the CLI's demo does (``"engine": "script"`` in the recipe uses this script's own loop instead:
``drop_last`` batches, and ``"optimizer": "sgd"`` for SGD with momentum 0.9, the loop of the first rows
of the table). The trusted ratio is printed twice: this script's walk (400 resamples, per pruner) and
``pescore_nb.recommend(ds)``, the rule as the CLI applies it.

Designs are the entries of ``DESIGNS`` (``d02s`` is the zoo's default and data since this study; results in
``benchmarks/demo_design.md``); ``--set`` overrides any field with JSON. Times are CPU seconds
(the process's, so a shared machine does not inflate them; use ``--threads 1`` there). Trained
models are cached under ``$TMPDIR/pescore-demo-design``, keyed by their recipe, so a second run
that changes only the fine-tuning costs only the fine-tuning and the evaluation.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from pescore_nb import data, prune, specs, stats, zoo
from pescore_nb.evaluation import evaluate
from pescore_nb.scores import score
from pescore_nb.trust import recommend

BASE = {
    "size": 64, "config": (8, "M", 16, "M", 32, "M", 64, 128), "layers": None,
    "scale": (0.22, 0.36), "distractors": (2, 5), "n_train": 3000,
    "train": {"epochs": 10, "batch_size": 32, "lr": 3e-3, "weight_decay": 5e-4, "augment": True},
    "finetune": {"images": 1500, "epochs": 1, "lr": 3e-4, "batch_size": 32},
}
DESIGNS = {
    "baseline": {},  # the zoo of main a3a2b12 (with the ring's hole in its mask)
    "q4": {"config": (16, "M", 32, "M", 64, 64, 128),
           "finetune": {"images": 1500, "epochs": 1, "lr": 5e-4, "batch_size": 32}},
    # q4 with the fine-tuning this study ends on (prune.Finetune: Adam 1e-3, batch 64, 2 epochs, 1500 images)
    "q4ft": {"config": (16, "M", 32, "M", 64, 64, 128),
             "finetune": {"images": 1500, "epochs": 2, "lr": 1e-3, "batch_size": 64}},
    # third round's choice, the defaults of data.shapes since: larger objects, at most two distractors
    "d02s": {"config": (16, "M", 32, "M", 64, 64, 128), "scale": (0.25, 0.38), "distractors": (0, 2),
             "finetune": {"images": 1500, "epochs": 1, "lr": 5e-4, "batch_size": 32}},
    "q4big": {"config": (16, "M", 32, "M", 64, 64, 128), "scale": (0.3, 0.45), "distractors": (1, 3)},
    "w96": {"config": (16, "M", 32, "M", 96, 96), "scale": (0.3, 0.45), "distractors": (1, 3), "n_train": 2500,
            "finetune": {"images": 1500, "epochs": 1, "lr": 5e-4, "batch_size": 32}},
    "q4big_ft": {"config": (16, "M", 32, "M", 64, 64, 128), "scale": (0.3, 0.45), "distractors": (1, 3),
                 "finetune": {"images": 1500, "epochs": 1, "lr": 1e-3, "batch_size": 32}},
}
PRUNE_SEED, FINETUNE_SEED, TWIN_SEED = 0, 0, 1
CACHE = Path(tempfile.gettempdir()) / "pescore-demo-design"


def design(name: str, overrides: str | None = None) -> dict:
    spec = json.loads(json.dumps({**BASE, **DESIGNS.get(name, {})}))
    spec.update(json.loads(overrides or "{}"))
    spec["config"] = tuple(spec["config"])
    return spec


def datasets(spec: dict, n_test: int):
    kw = {"scale": tuple(spec["scale"]), "distractors": tuple(spec["distractors"])}
    train = data.shapes(spec["n_train"], spec["size"], seed=0, split="train", **kw)
    test = data.shapes(n_test, spec["size"], seed=0, split="test", **kw)
    return train, test


def trained(spec: dict, train_data, seed: int) -> tuple[nn.Module, float]:
    """The design's VGG trained with ``seed`` (cached), and the seconds its training took."""
    model = zoo.VGG(len(data.SHAPE_CLASSES), config=spec["config"])
    key = hashlib.sha256(json.dumps([repr(model), spec["size"], spec["scale"], spec["distractors"],
                                     spec["n_train"], spec["train"], seed, zoo.TRAINING_THREADS]).encode()).hexdigest()[:16]
    path = CACHE / f"{key}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), json.loads(path.with_suffix(".json").read_text())["seconds"]
    start = time.process_time()
    zoo.train(model, train_data, **spec["train"], seed=seed)
    seconds = time.process_time() - start
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"seconds": seconds}))
    return model.eval(), seconds


def finetune(model: nn.Module, train_data, recipe: dict, seed: int) -> nn.Module:
    """Adam(lr) for ``epochs`` over the first ``images`` training images; batch order and dropout from ``seed``."""
    subset = Subset(train_data, range(min(recipe["images"], len(train_data))))
    loader = DataLoader(subset, batch_size=recipe["batch_size"], shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    if recipe.get("optimizer", "adam") == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(recipe["epochs"]):
            for images, labels in loader:
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(images), labels).backward()
                optimizer.step()
    return model.eval()


def randomised(reference: nn.Module, layer: str, seed: int = 123) -> nn.Module:
    """A copy whose classifier and every features module from ``layer``'s convolution on are re-initialised."""
    model = copy.deepcopy(reference)
    index = int(layer.split(".")[1])
    first = max(i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d) and i < index)
    torch.manual_seed(seed)
    for module in list(model.features)[first:] + list(model.classifier):
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
    model.pescore_pruning = {"role": "control", "pruner": "none", "ratio": 0.0}
    return model.eval()


def trusted_ratio(ds, layer: str, pruner: str, ratios, accuracy_budget=0.02, margin=0.05) -> tuple[float, list]:
    """The largest ratio up to which every candidate of ``pruner`` passes, and each candidate's (drop, bound)."""
    accuracy = ds.accuracy.to_series()
    reference = accuracy["reference"]
    rows, trusted, walking = [], 0.0, True
    for ratio in ratios:
        name = f"{pruner}@{ratio:.2f}"
        bound = float(stats.compare(ds.sel(layer=[layer]), "control:finetune", name, level=0.90,
                                    n_resamples=400).high.values.ravel()[0])
        drop = reference - accuracy[name]
        ok = drop <= accuracy_budget and bound <= margin
        rows.append((ratio, drop, bound, ok))
        if walking and ok:
            trusted = ratio
        walking = walking and ok
    return trusted, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="baseline")
    parser.add_argument("--set", default=None, help="JSON overrides of the design, e.g. '{\"n_train\": 2000}'")
    parser.add_argument("--test", type=int, default=600)
    parser.add_argument("--ratios", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--pruners", default="l2,senpis,taylor,random")
    parser.add_argument("--layers", type=int, default=3, help="evaluate the last N ReLUs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--more-twins", default="", help="further twin seeds, e.g. 2,3,4: the spread of the twin's PE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo.TRAINING_THREADS = args.threads  # on a busy machine one thread wastes less time waiting for the other
    spec = design(args.design, args.set)
    ratios = [float(r) for r in args.ratios.split(",")]
    pruners = args.pruners.split(",")
    print(json.dumps({"design": args.design, **spec}))
    times, clock = {}, time.process_time  # CPU seconds: the machine is shared, wall time is not the cost
    start = clock()
    train, test = datasets(spec, args.test)
    times["data"] = clock() - start
    reference, times["train reference"] = trained(spec, train, 0)
    twin, times["train twin"] = trained(spec, train, TWIN_SEED)
    relus = [f"features.{i}" for i, m in enumerate(reference.features) if isinstance(m, nn.ReLU)]
    layers = spec["layers"] or relus[-args.layers:]
    print(f"accuracy reference {zoo.accuracy(reference, test):.3f} twin {zoo.accuracy(twin, test):.3f}; "
          f"mean mask area {test.masks.float().mean():.2f} (a uniform map's energy in mask)")

    start = clock()
    example = test[0][0][None]
    recipe = spec["finetune"]
    twin.pescore_pruning = {"role": "control", "pruner": "none", "ratio": 0.0}
    if recipe.get("engine", "prune") == "prune":  # what the CLI runs: prune.sweep with prune.Finetune (Adam)
        finetuning = prune.Finetune(specs.first_images(train, recipe["images"]), epochs=recipe["epochs"],
                                    lr=recipe["lr"], batch_size=recipe["batch_size"],
                                    distill=recipe.get("distill", False))
        models = prune.sweep(reference, example, ratios, pruner=pruners, seed=PRUNE_SEED, finetune=finetuning,
                             data=train, ignored_layers=spec.get("ignored_layers"))
    else:  # this script's own loop (drop_last, optional SGD): the rows measured before prune.Finetune
        control = finetune(copy.deepcopy(reference), train, recipe, FINETUNE_SEED)
        control.pescore_pruning = {"role": "control", "pruner": "none", "ratio": 0.0}
        models = {"control:finetune": control}
        for pruner in pruners:
            for name, pruned in prune.sweep(reference, example, ratios, pruner, seed=PRUNE_SEED, data=train,
                                            ignored_layers=spec.get("ignored_layers")).items():
                meta = pruned.pescore_pruning
                models[name] = finetune(pruned, train, recipe, FINETUNE_SEED)
                models[name].pescore_pruning = meta
    models["control:twin"] = twin
    for seed in [int(seed) for seed in args.more_twins.split(",") if seed]:
        models[f"twin:seed{seed}"], _ = trained(spec, train, seed)
        models[f"twin:seed{seed}"].pescore_pruning = {"role": "control", "pruner": "none", "ratio": 0.0}
    times["prune + fine-tune"] = clock() - start
    for layer in layers:
        models[f"randomised:{layer}"] = randomised(reference, layer)

    start = clock()
    ds = evaluate(reference, models, test, layers=layers, cams=["gradcam++"], progress=False,
                  heatmap_size=(8, 8), heatmap_dtype="float16")
    times["evaluate"] = clock() - start
    pe = score(ds).sel(cam="gradcam++").to_pandas()  # (model, layer)
    energy = ds.energy_in_mask.sel(model="reference", cam="gradcam++").mean("image").to_series()
    print("\nlayer        energy  twin  control  randomised  (PE; energy = reference's share in mask)")
    for layer in layers:
        print(f"{layer:12s} {energy[layer]:.2f}   {pe.loc['control:twin', layer]:.2f}  "
              f"{pe.loc['control:finetune', layer]:.2f}     {pe.loc[f'randomised:{layer}', layer]:.2f}")
    parts = {name: score(ds, name).sel(cam="gradcam++", model="control:twin").to_series() for name in ("ssim", "iou", "conf")}
    print("twin's SSIM / IoU / Conf: " + ", ".join(
        f"{layer} {parts['ssim'][layer]:.2f}/{parts['iou'][layer]:.2f}/{parts['conf'][layer]:.2f}" for layer in layers))
    twins = ["control:twin"] + [name for name in pe.index if name.startswith("twin:seed")]
    if len(twins) > 1:
        print("twins' PE (seed 1, then --more-twins): " + ", ".join(
            f"{layer} " + "/".join(f"{pe.loc[name, layer]:.2f}" for name in twins) for layer in layers))
    accuracy = ds.accuracy.to_series()
    print(f"\naccuracy: reference {accuracy['reference']:.3f}  control {accuracy['control:finetune']:.3f}  "
          f"twin {accuracy['control:twin']:.3f}")
    for pruner in pruners:
        print(f"\n{pruner}: ratio  accuracy  " + "  ".join(f"PE {layer}" for layer in layers))
        for ratio in ratios:
            name = f"{pruner}@{ratio:.2f}"
            print(f"      {ratio:.1f}    {accuracy[name]:.3f}    "
                  + "  ".join(f"{pe.loc[name, layer]:.2f}".ljust(len(layer) + 3) for layer in layers))
        for layer in layers:
            trusted, rows = trusted_ratio(ds, layer, pruner, ratios)
            print(f"  trusted at {layer}: {trusted:.1f}   bounds: "
                  + " ".join(f"{r:.1f}:{b:+.3f}{'' if ok else '*'}" for r, _, b, ok in rows))
    table = recommend(ds)  # the rule as the CLI applies it (2000 resamples)
    print("\nrecommend(): " + "; ".join(f"{r.pruner} {r.layer} trusted {r.ratio:.1f} (first failure "
                                         f"{r.first_failure} on {r.fails_on or '-'})" for r in table.itertuples()))
    demo = times["train reference"] + times["train twin"] + times["prune + fine-tune"] + times["evaluate"]
    print(f"\nCPU times (s, {torch.get_num_threads()} threads): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
          + f"; demo {demo:.0f} CPU s")


if __name__ == "__main__":
    main()
