"""``pescore demo --model vit --quick``: the demo's pipeline end to end on the zoo ViT.

The zoo ViT and its twin are trained once per machine (minutes on 2 cores) and then loaded from the
cache ($PESCORE_CACHE, else ~/.cache/pescore_nb); the quick demo itself takes about two minutes.
"""
import hashlib
import json
import re
import time

import pytest
import torch

from pescore_nb import cli, data, load, schema, structure, trust, zoo
from pescore_nb.senpis import class_balanced_sample
from test_cli import pescore


@pytest.fixture(scope="module")
def vit_demo(tmp_path_factory):
    zoo.load("vit", "shapes", progress=False)
    zoo.load("vit", "shapes", seed=1, progress=False)
    folder = tmp_path_factory.mktemp("vit-demo")
    start = time.monotonic()
    done = pescore("demo", "--model", "vit", "--quick", "--out", "out", cwd=folder)
    print(f"pescore demo --model vit --quick: {time.monotonic() - start:.0f} s with the models cached")
    return done, folder / "out"


@pytest.mark.slow
def test_the_vit_demo_prunes_scores_and_reports_the_vit(vit_demo):
    done, out = vit_demo
    assert done.returncode == 0, done.stderr[-2000:]
    ds = load(out / "results.nc", lazy=False)
    assert ds[schema.LAYER].values.tolist() == list(zoo.cam_layers("vit", "shapes"))
    assert set(ds[schema.PRUNER].values) == {schema.UNPRUNED, *cli.DEMO_PRUNERS}
    assert {schema.CONTROL_FINETUNE, schema.CONTROL_TWIN} <= set(structure.seed_groups(ds))
    assert structure.all_seeds(ds) == [0, 1, 2]
    params = ds[schema.PARAMS].to_series()
    reference = params[schema.REFERENCE]
    for pruner in cli.DEMO_PRUNERS:
        by_ratio = [params[f"{pruner}@{ratio:.2f}/seed0"] for ratio in cli.QUICK_PRUNE.ratios]
        assert reference > by_ratio[0] > by_ratio[1] > by_ratio[2]
    pe = ds[schema.PE].mean("image")
    assert float(pe.sel(model=schema.REFERENCE).min()) == 1.0
    checks = trust.layer_checks(ds)
    assert float(checks.degenerate_share.max()) <= 0.10  # of the reference's maps
    assert (out / "report.html").exists() and "Largest trusted ratio" in done.stdout


@pytest.mark.slow
def test_the_quick_demo_ranks_channels_on_its_smaller_sample(vit_demo):
    """SeNPIS and Taylor in ``--quick`` rank on ``QUICK_SAMPLES_PER_CLASS`` images of each class, drawn
    with each model's seed: the digest recorded in the provenance is recomputed here from the images."""
    _, out = vit_demo
    ds = load(out / "results.nc", lazy=False)
    train = data.builtin("shapes", "train")
    for seed in structure.all_seeds(ds):
        images, labels = class_balanced_sample(train, cli.QUICK_SAMPLES_PER_CLASS, seed)
        assert len(labels) == cli.QUICK_SAMPLES_PER_CLASS * len(train.classes)
        sha = hashlib.sha256(b"".join(image.contiguous().numpy().tobytes() for image in images))
        sha.update(labels.to(torch.int64).numpy().tobytes())
        for pruner in ("senpis", "taylor"):
            provenance = json.loads(str(ds[schema.PROVENANCE].sel(model=f"{pruner}@0.10/seed{seed}").item()))
            assert provenance["pruning_data_digest"] == sha.hexdigest()[:16]


@pytest.mark.slow
def test_the_zoo_vits_maps_do_not_reproduce_so_its_layer_is_flagged_and_nothing_trusted(vit_demo):
    """What README and docs/transformers.md say of the zoo ViT: its twin's PE is hardly above the
    randomised copy's, so the layer checks flag its CAM layer and no pruner gets a trusted ratio."""
    done, out = vit_demo
    ds = load(out / "results.nc", lazy=False)
    checks = trust.layer_checks(ds)
    assert not bool(checks.usable.any())
    assert bool((checks.twin_pe - checks.randomised_pe < checks.attrs["min_above_randomised"]).all())
    assert not trust.recommend(ds).layer_usable.any()
    for pruner in cli.DEMO_PRUNERS:
        assert re.search(rf"^{pruner} +\S+ +gradcam\+\+ +none trusted \(layer flagged\)", done.stdout, re.M), pruner
