"""Bootstrap intervals and paired comparisons: estimates, coverage, planted differences."""
import itertools

import numpy as np
import pytest
import xarray as xr

from pescore_nb import schema, stats
from pescore_nb.metrics import PEConfig
from pescore_nb.scores import by_class, score
from synthetic import results_dataset

CLASS_SIZES = (40, 25, 15)
BETA = ((8.0, 2.0), (5.0, 5.0), (2.0, 6.0))  # per class: true mean a / (a + b)


def simulated(n_cases: int, seed: int, class_weights: str = "support", shift=0.0, noise=0.0) -> xr.Dataset:
    """PE of ``n_cases`` independent "models" on one image set (unbalanced classes, Beta scores).

    With ``noise``, models "a" and "b" are the Beta scores plus independent N(0, noise) each (clipped to
    [0, 1], so exchangeable on every image); "b" also loses ``shift``: a paired candidate on the same
    images, on ``layer`` i.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES)
    pe = np.concatenate([rng.beta(a, b, size=(n_cases, size)) for (a, b), size in zip(BETA, CLASS_SIZES)], axis=1)
    noisy = (lambda values: np.clip(values + rng.normal(0, noise, pe.shape), 0, 1)) if noise else (lambda values: values)
    models = {"a": noisy(pe), "b": np.clip(noisy(pe) - shift, 0, 1)}
    return xr.Dataset({schema.PE: ((schema.MODEL, schema.LAYER, schema.CAM, schema.IMAGE),
                                   np.stack([models["a"], models["b"]])[:, :, None, :])},
                      coords={schema.MODEL: ["a", "b"], schema.LAYER: [f"case{i}" for i in range(n_cases)],
                              schema.CAM: ["gradcam"], schema.LABEL: (schema.IMAGE, labels)},
                      attrs={"pe_config": PEConfig(class_weights=class_weights).to_json()})


def true_score(class_weights: str) -> float:
    means = np.array([a / (a + b) for a, b in BETA])
    weights = np.array(CLASS_SIZES) / sum(CLASS_SIZES) if class_weights == "support" else np.full(3, 1 / 3)
    return float(means @ weights)


def test_estimates_are_the_scores_of_all_images():
    ds = results_dataset(n_images=30)
    overall = stats.bootstrap(ds, n_resamples=50)
    per_class = stats.bootstrap(ds, per_class=True, n_resamples=50)
    xr.testing.assert_allclose(overall["estimate"], score(ds).rename(None))
    xr.testing.assert_allclose(per_class["estimate"], by_class(ds).transpose(*per_class["estimate"].dims).rename(None))
    assert (overall["low"] <= overall["estimate"]).all() and (overall["estimate"] <= overall["high"]).all()
    assert list(per_class[schema.CLASS_NAME].values) == ["class0", "class1", "class2"]


def test_interval_width_matches_the_stratified_standard_error():
    ds = simulated(1, seed=1)
    interval = stats.bootstrap(ds, n_resamples=4000, seed=2).sel(model="a").squeeze()
    values, labels = ds[schema.PE].sel(model="a").values.ravel(), ds[schema.LABEL].values
    weights = np.array(CLASS_SIZES) / sum(CLASS_SIZES)
    variances = [values[labels == k].var() / size for k, size in enumerate(CLASS_SIZES)]  # bootstrap variance
    standard_error = np.sqrt(weights ** 2 @ variances)
    assert float(interval["high"] - interval["low"]) / (2 * 1.96) == pytest.approx(standard_error, rel=0.08)


@pytest.mark.parametrize("class_weights", ["support", "macro"])
def test_95_percent_intervals_cover_the_true_score_in_200_simulated_cases(class_weights):
    interval = stats.bootstrap(simulated(200, seed=3, class_weights=class_weights), n_resamples=1000).sel(model="a")
    truth = true_score(class_weights)
    coverage = float(((interval["low"] <= truth) & (truth <= interval["high"])).mean())
    assert coverage >= 0.90


def test_per_class_intervals_cover_each_class_mean():
    interval = stats.bootstrap(simulated(200, seed=4), per_class=True, n_resamples=1000).sel(model="a")
    truth = xr.DataArray([a / (a + b) for a, b in BETA], dims=schema.LABEL)
    coverage = ((interval["low"] <= truth) & (truth <= interval["high"])).mean(schema.LAYER)
    assert (coverage >= 0.88).all(), coverage.values


def test_paired_comparison_finds_a_planted_difference():
    result = stats.compare(simulated(3, seed=5, shift=0.03, noise=0.02), "a", "b", n_resamples=2000).squeeze()
    assert np.allclose(result["estimate"], 0.03, atol=0.01)
    assert (result["low"] > 0).all() and (result["p_value"] < 0.01).all()


def test_paired_comparison_finds_nothing_where_nothing_was_planted():
    result = stats.compare(simulated(200, seed=6, noise=0.05), "a", "b", n_resamples=500)
    false_positives = float((result["p_value"] < 0.05).mean())
    covered = float(((result["low"] <= 0) & (0 <= result["high"])).mean())
    assert false_positives <= 0.10 and covered >= 0.90
    assert float(result["p_value"].min()) >= 1 / 501


def test_sign_flip_p_value_matches_the_exact_permutation_test():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    differences = np.array([0.05, 0.02, -0.01, 0.04, 0.03, 0.06, -0.02, 0.01, 0.05])
    pe = np.stack([0.5 + differences, np.full_like(differences, 0.5)])[:, None, None, :]  # scores in [0, 1]
    ds = xr.Dataset({schema.PE: (schema.SCORE_DIMS, pe)},
                    coords={schema.MODEL: ["a", "b"], schema.LAYER: ["l"], schema.CAM: ["m"],
                            schema.LABEL: (schema.IMAGE, labels)}, attrs={"pe_config": PEConfig().to_json()})
    image_weight = np.where(labels == 0, 5 / 9 / 5, 4 / 9 / 4)
    observed = abs(differences @ image_weight)
    flips = [abs((np.array(signs) * differences) @ image_weight) for signs in itertools.product((-1, 1), repeat=9)]
    exact = np.mean(np.array(flips) >= observed - 1e-12)
    p_value = float(stats.compare(ds, "a", "b", n_resamples=20000)["p_value"].squeeze())
    assert p_value == pytest.approx(exact, abs=0.01)


def test_identical_models_have_no_difference_and_p_value_one():
    result = stats.compare(results_dataset(), "l2@0.30", "l2@0.30", n_resamples=100)
    assert float(abs(result["estimate"]).max()) == 0.0 and float(result["p_value"].min()) == 1.0
    assert schema.MODEL not in result.coords and schema.RATIO not in result.coords


def test_same_seed_same_interval():
    ds = results_dataset()
    first, second = (stats.bootstrap(ds, n_resamples=100, seed=7) for _ in range(2))
    xr.testing.assert_identical(first, second)


def test_errors_say_what_to_do():
    ds = results_dataset()
    with pytest.raises(KeyError, match="its models are"):
        stats.compare(ds, "reference", "l1@0.30")
    with pytest.raises(ValueError, match="dropna"):
        stats.bootstrap(ds.assign(pe=ds[schema.PE].where(ds[schema.IMAGE] != 3)))
    with pytest.raises(ValueError, match="level must be in"):
        stats.bootstrap(ds, level=95)
    with pytest.raises(ValueError, match="n_resamples must be"):
        stats.bootstrap(ds, n_resamples=0)
    with pytest.raises(KeyError, match="No variable"):
        stats.bootstrap(ds, "sp2ps")
