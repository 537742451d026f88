"""Fine-tuning seeds: names, the seed coordinate, groups, and the seed-aware trust rule."""
import json
import math
import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import stats as scipy_stats

import pescore_nb as pe
from pescore_nb import schema, structure, trust
from pescore_nb.metrics import PEConfig
from pescore_nb.stats import stratified_upper_bound
from pescore_nb.store import SchemaUpgradeWarning
from pescore_nb.trust import NOT_ASSESSABLE, assess, recommend, seed_bound
from synthetic import results_dataset, seeded_results_dataset

N_CLASSES, PER_CLASS = 6, 100


def zero_mean_pattern(rng: np.random.Generator, sd: float = 0.2) -> np.ndarray:
    """Per-image values ``(6 * 100,)`` uniform with standard deviation ``sd``, centred within each class."""
    pattern = rng.uniform(-sd * math.sqrt(3), sd * math.sqrt(3), (N_CLASSES, PER_CLASS))
    pattern -= pattern.mean(axis=1, keepdims=True)
    return (pattern * sd / pattern.std()).ravel()


def three_seed_dataset(gaps_by_pruner: dict[str, list[float]]) -> xr.Dataset:
    """Reference, ``control:finetune/seed<s>`` and ``<pruner>@0.10/seed<s>`` for seeds 0, 1, 2 on 6 x 100 images.

    Each seed's per-image gap PE(control) - PE(candidate) is its mean gap plus one shared zero-mean pattern.
    """
    labels = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    pattern = zero_mean_pattern(np.random.default_rng(0))
    names, pe_rows, roles, pruners, ratios, seeds = [schema.REFERENCE], [np.ones(len(labels))], [schema.REFERENCE], \
        [schema.UNPRUNED], [0.0], [schema.NO_SEED]
    for seed in range(3):
        names.append(schema.seeded_name(schema.CONTROL_FINETUNE, seed))
        pe_rows.append(0.6 + pattern / 2)
        roles.append(schema.CONTROL), pruners.append(schema.UNPRUNED), ratios.append(0.0), seeds.append(seed)
        for pruner, gaps in gaps_by_pruner.items():
            names.append(schema.seeded_name(f"{pruner}@0.10", seed))
            pe_rows.append(0.6 - pattern / 2 - gaps[seed])
            roles.append(schema.CANDIDATE), pruners.append(pruner), ratios.append(0.1), seeds.append(seed)
    return xr.Dataset(
        {schema.PE: (schema.SCORE_DIMS, np.array(pe_rows)[:, None, None, :])},
        coords={schema.MODEL: names, schema.ROLE: (schema.MODEL, roles), schema.PRUNER: (schema.MODEL, pruners),
                schema.RATIO: (schema.MODEL, ratios), schema.SEED: (schema.MODEL, seeds),
                schema.ACCURACY: (schema.MODEL, [1.0] * len(names)),
                schema.LAYER: ["features.16"], schema.CAM: ["gradcam++"], schema.IMAGE: np.arange(len(labels)),
                schema.LABEL: (schema.IMAGE, labels),
                schema.CLASS_NAME: (schema.IMAGE, [f"class{k}" for k in labels])},
        attrs={"pe_config": PEConfig().to_json()})


def test_a_seed_spread_wider_than_the_margin_is_not_trusted_though_pooled_images_would_pass():
    ds = three_seed_dataset({"l2": [0.00, 0.07, 0.02], "taylor": [0.010, 0.012, 0.011]})
    verdicts = assess(ds).squeeze(["layer", "cam"], drop=True)
    assert verdicts["verdict"].sel(model=["l2@0.10", "taylor@0.10"]).values.tolist() == ["not trusted", "trusted"]
    assert verdicts["n_seeds"].sel(model="l2@0.10") == 3
    assert verdicts["covers"].sel(model="l2@0.10").item() == "test images and training seeds"
    l2_pe = [float(pe.score(ds).sel(model=f"l2@0.10/seed{s}").squeeze()) for s in range(3)]
    assert float(verdicts["pe"].sel(model="l2@0.10")) == pytest.approx(np.mean(l2_pe))
    assert (float(verdicts["pe_min"].sel(model="l2@0.10")), float(verdicts["pe_max"].sel(model="l2@0.10"))) == \
        pytest.approx((min(l2_pe), max(l2_pe)))
    # Pooling the 1,800 paired images into one sample of test images would call l2 non-inferior.
    per_image = ds[schema.PE].squeeze(["layer", "cam"])
    pooled = np.concatenate([(per_image.sel(model=f"control:finetune/seed{s}")
                              - per_image.sel(model=f"l2@0.10/seed{s}")).values for s in range(3)])
    pooled_bound = stratified_upper_bound(pooled[None], np.tile(ds[schema.LABEL].values, 3),
                                          np.full(N_CLASSES, 1 / N_CLASSES), n_resamples=2000)
    assert pooled_bound[0] < 0.05 < float(verdicts["bound"].sel(model="l2@0.10"))
    assert recommend(ds).set_index("pruner").loc["l2"].model is None  # beside a trusted pruner: None, not NaN
    row = recommend(ds).set_index("pruner").loc["taylor"]
    assert (row.ratio, row.model, row.n_seeds, row.covers) == (0.1, "taylor@0.10", 3, "test images and training seeds")
    assert row.bound == pytest.approx(float(verdicts["bound"].sel(model="taylor@0.10")))


def welch_bound(gaps: np.ndarray, labels: np.ndarray, level: float = 0.95) -> float:
    """The seed-aware bound recomputed in float64 with loops, for ``gaps (S, N)`` and support weights."""
    classes = sorted(set(labels.tolist()))
    weights = {k: float(np.mean(labels == k)) for k in classes}
    per_seed = [sum(weights[k] * gaps[s][labels == k].mean() for k in classes) for s in range(len(gaps))]
    spread = float(np.var(per_seed, ddof=1)) / len(gaps)
    averaged = gaps.mean(axis=0)
    images = sum(weights[k] ** 2 * np.var(averaged[labels == k], ddof=1) / np.sum(labels == k) for k in classes)
    freedom = (spread + images) ** 2 / (spread ** 2 / (len(gaps) - 1) + images ** 2 / (len(labels) - len(classes)))
    return float(np.mean(per_seed) + scipy_stats.t.ppf(level, freedom) * math.sqrt(spread + images))


def test_seed_bound_equals_a_float64_recomputation_of_its_formula():
    rng = np.random.default_rng(3)
    labels = np.array([0] * 7 + [1] * 4 + [2] * 9)
    gaps = rng.normal(0.03, 0.1, (4, len(labels))) + rng.normal(0, 0.05, (4, 1))
    weights = np.bincount(labels) / len(labels)
    assert seed_bound(gaps, labels, weights) == pytest.approx(welch_bound(gaps, labels), rel=1e-12)
    stacked = np.stack([gaps, gaps[::-1] * 0.5])  # leading dimensions are independent problems
    assert seed_bound(stacked, labels, weights) == pytest.approx([welch_bound(g, labels) for g in stacked])


def test_seed_bound_with_one_seed_is_the_stratified_bootstrap_and_with_one_image_per_class_is_nan():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    gaps = rng.normal(0.02, 0.1, (1, 60))
    weights = np.full(3, 1 / 3)
    expected = stratified_upper_bound(gaps, labels, weights, 0.95, n_resamples=500, seed=4)
    assert seed_bound(gaps, labels, weights, n_resamples=500, seed=4) == pytest.approx(expected[0])
    assert np.isnan(seed_bound(rng.normal(0, 0.1, (3, 3)), np.arange(3), weights))


def simulated_gaps(rng, mean_gap: float, tau: float, draws: int = 1000, n_seeds: int = 3) -> np.ndarray:
    """``(draws, S, N)``: gap = mean + u_i (shared by the seeds) + e_{s,i} + o_s, on 6 classes x 100 images."""
    n_images = N_CLASSES * PER_CLASS
    shared = rng.normal(0, 0.15, (draws, 1, n_images))
    noise = rng.normal(0, 0.10, (draws, n_seeds, n_images))
    offsets = rng.normal(0, tau, (draws, n_seeds, 1))
    return mean_gap + shared + noise + offsets


def spread_only_bound(gaps, level=0.95):
    """Only the spread between the seeds' class-weighted means (a t interval with S - 1 df)."""
    per_seed = gaps.mean(-1)  # support weights: the class-weighted mean is the plain mean
    n_seeds = gaps.shape[-2]
    return per_seed.mean(-1) + scipy_stats.t.ppf(level, n_seeds - 1) * per_seed.std(-1, ddof=1) / math.sqrt(n_seeds)


def pooled_bound(gaps, labels, level=0.95):
    """All S x N paired images as one stratified sample of test images."""
    pooled = gaps.reshape(len(gaps), -1)
    pooled_labels = np.tile(labels, gaps.shape[1])
    variance = sum((1 / N_CLASSES) ** 2 * pooled[:, pooled_labels == k].var(-1, ddof=1) / np.sum(pooled_labels == k)
                   for k in range(N_CLASSES))
    return pooled.mean(-1) + scipy_stats.norm.ppf(level) * np.sqrt(variance)


def seeds_then_images_bound(gaps, labels, rng, level=0.95, resamples=400):
    """A two-level bootstrap: draw S seeds with replacement, then each class's images with replacement."""
    draws, n_seeds, n_images = gaps.shape
    image_counts = np.zeros((resamples, n_images))
    for k in range(N_CLASSES):
        members = np.flatnonzero(labels == k)
        for b in range(resamples):
            np.add.at(image_counts[b], rng.choice(members, len(members)), 1)
    seed_means = np.einsum("bn,dsn->dbs", image_counts, gaps) / n_images          # (draws, resamples, S)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), (draws, resamples))
    return np.quantile((seed_counts * seed_means).sum(-1) / n_seeds, level, axis=1)


def test_the_seed_aware_rule_is_calibrated_where_three_other_rules_are_not():
    """At a true gap equal to the margin, a 95 % rule should trust at most ~5 % of studies (here <= 8 %)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    weights = np.full(N_CLASSES, 1 / N_CLASSES)
    margin, trusted = 0.05, {}
    for tau in (0.0, 0.02, 0.04):
        gaps = simulated_gaps(rng, margin, tau)
        trusted[tau] = float(np.mean(seed_bound(gaps, labels, weights) <= margin))
        assert trusted[tau] <= 0.08, (tau, trusted[tau])
        if tau == 0.0:
            assert np.mean(spread_only_bound(gaps) <= margin) > 0.08
        if tau == 0.04:
            assert np.mean(pooled_bound(gaps, labels) <= margin) > 0.08
            assert np.mean(seeds_then_images_bound(gaps, labels, rng) <= margin) > 0.08
    power = float(np.mean(seed_bound(simulated_gaps(rng, 0.0, 0.02), labels, weights) <= margin))
    assert power >= 0.60, power


def test_seed_groups_map_names_without_their_seed_to_their_models():
    ds = seeded_results_dataset(seeds=(3, 5))
    groups = structure.seed_groups(ds)
    assert groups["l2@0.30"] == ["l2@0.30/seed3", "l2@0.30/seed5"]
    assert groups[schema.CONTROL_FINETUNE] == ["control:finetune/seed3", "control:finetune/seed5"]
    assert groups[schema.REFERENCE] == [schema.REFERENCE] and groups[schema.CONTROL_TWIN] == [schema.CONTROL_TWIN]
    assert structure.by_ratio(ds, "random") == ["random@0.30", "random@0.60"]
    assert structure.all_seeds(ds) == [3, 5]
    one = structure.one_seed(ds, 5)
    assert sorted(one[schema.MODEL].values.tolist()) == sorted(
        [schema.REFERENCE, schema.CONTROL_TWIN, "control:finetune/seed5", "l2@0.30/seed5", "l2@0.60/seed5",
         "random@0.30/seed5", "random@0.60/seed5"])
    assert assess(one)["covers"].sel(model="l2@0.30").item() == "test images"
    with pytest.raises(ValueError, match="No group of models has seed 4; the seeds are \\[3, 5\\]"):
        structure.one_seed(ds, 4)


def test_a_group_whose_members_differ_in_pruner_or_share_a_seed_is_refused():
    ds = seeded_results_dataset(seeds=(0, 1))
    pruners = ds[schema.PRUNER].values.copy()
    pruners[ds[schema.MODEL].values.tolist().index("l2@0.30/seed1")] = "random"
    with pytest.raises(ValueError, match="differ only by seed in their names but have other roles, pruners"):
        structure.seed_groups(ds.assign_coords({schema.PRUNER: (schema.MODEL, pruners)}))
    seeds = ds[schema.SEED].values.copy()
    seeds[ds[schema.MODEL].values.tolist().index("l2@0.30/seed1")] = 0
    with pytest.raises(ValueError, match="share one seed"):
        structure.seed_groups(ds.assign_coords({schema.SEED: (schema.MODEL, seeds)}))


def test_a_candidate_seed_without_the_control_of_that_seed_is_not_assessable():
    ds = seeded_results_dataset(seeds=(0, 1, 2))
    ds = ds.drop_sel(model="control:finetune/seed2")
    verdicts = assess(ds).squeeze("cam", drop=True).isel(layer=0)
    assert verdicts["verdict"].sel(model="l2@0.30").item() == NOT_ASSESSABLE
    assert "no control of seed 2" in verdicts["reason"].sel(model="l2@0.30").item()
    assert not bool(verdicts["trustworthy"].sel(model="l2@0.30"))
    row = recommend(ds).iloc[0]
    assert (row.model, row.fails_on, row.first_failure) == (None, NOT_ASSESSABLE, 0.3)
    assert row.reason.startswith("no control of seed 2")


def test_one_seed_says_the_bound_covers_the_test_images_only():
    ds = results_dataset(controls={schema.CONTROL_FINETUNE: 0.05})
    ds = ds.assign_coords({schema.SEED: (schema.MODEL, [schema.NO_SEED if role == schema.REFERENCE else 0
                                                        for role in ds[schema.ROLE].values])})
    row = recommend(ds).iloc[0]
    assert (row.n_seeds, row.covers) == (1, "test images")


def test_a_schema_2_file_loads_with_seeds_from_provenance(tmp_path):
    ds = results_dataset(controls={schema.CONTROL_FINETUNE: 0.05}).drop_vars(schema.SEED)
    provenance = [json.dumps({"pruning_seed": 4}) if role != schema.REFERENCE else "{}"
                  for role in ds[schema.ROLE].values]
    ds = ds.assign_coords({schema.PROVENANCE: (schema.MODEL, provenance)})
    ds.attrs[schema.SCHEMA_VERSION_ATTRIBUTE] = 2
    path = tmp_path / "old.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pe.load(path)
    upgrades = [w for w in caught if issubclass(w.category, SchemaUpgradeWarning)]
    assert len(upgrades) == 1 and "added 'seed'" in str(upgrades[0].message)
    assert loaded[schema.SEED].values.tolist() == [-1] + [4] * (ds.sizes[schema.MODEL] - 1)
    assert loaded.attrs[schema.SCHEMA_VERSION_ATTRIBUTE] == schema.SCHEMA_VERSION == 3
    assert recommend(loaded).equals(recommend(ds.assign_coords({schema.SEED: loaded[schema.SEED].values})))


def test_a_sweep_with_seeds_is_evaluated_into_named_seeded_models():
    from torch.utils.data import TensorDataset

    from pescore_nb import controls, prune
    from test_prune import learnable_task, tiny_net

    images, labels = learnable_task()
    reference = tiny_net(num_classes=2)
    finetune = prune.Finetune(TensorDataset(images[:40], labels[:40]), epochs=1, lr=1e-2, batch_size=16)
    candidates = prune.sweep(reference, images[:1], [0.5], pruner="l2", seed=3, seeds=2, finetune=finetune)
    assert sorted(candidates) == ["control:finetune/seed3", "control:finetune/seed4", "l2@0.50/seed3", "l2@0.50/seed4"]
    candidates[schema.CONTROL_TWIN] = controls.as_control(tiny_net(num_classes=2))
    ds = pe.evaluate(reference, candidates, TensorDataset(images[40:], labels[40:]), layers=["2"], cams="gradcam",
                     config=PEConfig(ssim_window=5), progress=False)
    seeds = dict(zip(ds[schema.MODEL].values.tolist(), ds[schema.SEED].values.tolist()))
    assert seeds == {schema.REFERENCE: -1, "l2@0.50/seed3": 3, "l2@0.50/seed4": 4, "control:finetune/seed3": 3,
                     "control:finetune/seed4": 4, schema.CONTROL_TWIN: -1}
    assert ds.attrs[schema.SCHEMA_VERSION_ATTRIBUTE] == 3
    assert structure.seed_groups(ds)["l2@0.50"] == ["l2@0.50/seed3", "l2@0.50/seed4"]
    assert recommend(ds, rule="control").iloc[0].n_seeds == 2


def test_accuracy_is_judged_on_the_mean_over_seeds():
    ds = three_seed_dataset({"taylor": [0.010, 0.012, 0.011]})
    accuracy = ds[schema.ACCURACY].values.copy()
    accuracy[ds[schema.MODEL].values.tolist().index("taylor@0.10/seed1")] = 0.96  # one seed alone loses 4 points
    verdicts = assess(ds.assign_coords({schema.ACCURACY: (schema.MODEL, accuracy)})).squeeze(["layer", "cam"])
    assert float(verdicts["accuracy_drop"].sel(model="taylor@0.10")) == pytest.approx(0.04 / 3)
    assert verdicts["verdict"].sel(model="taylor@0.10").item() == "trusted"
    accuracy[ds[schema.MODEL].values.tolist().index("taylor@0.10/seed2")] = 0.96  # the mean now loses 2.7 points
    verdicts = assess(ds.assign_coords({schema.ACCURACY: (schema.MODEL, accuracy)})).squeeze(["layer", "cam"])
    assert verdicts["reason"].sel(model="taylor@0.10").item() == "accuracy drop 0.027 > 0.02"


def test_attention_gaps_compare_group_means_never_two_seeds_of_one_group():
    ds = three_seed_dataset({"l2": [0.00, 0.07, 0.02], "taylor": [0.15, 0.17, 0.16]})
    gaps = trust.attention_gaps(ds)
    assert gaps[["model_a", "model_b"]].values.tolist() == [["l2@0.10", "taylor@0.10"]]
    mean_pe = {name: np.mean([float(pe.score(ds).sel(model=f"{name}/seed{s}").squeeze()) for s in range(3)])
               for name in ("l2@0.10", "taylor@0.10")}
    assert (gaps.pe_a[0], gaps.pe_b[0]) == pytest.approx((mean_pe["l2@0.10"], mean_pe["taylor@0.10"]))
