"""recommend and assess on hand-built Datasets whose answers are known by hand."""
import math

import numpy as np
import torch
import pytest
import xarray as xr

from pescore_nb import schema
from pescore_nb.metrics import PEConfig
from pescore_nb.trust import COLUMNS, assess, attention_gaps, layer_checks, recommend
from synthetic import results_dataset

CLASSES = ("cat", "dog", "fox")


def hand_built(models, layers=("conv",)):
    """A Dataset with the exact class PEs given; two images per class, so PE = the mean of the classes.

    models: ``[(name, pruner, ratio, accuracy, {layer: (pe_cat, pe_dog, pe_fox)})]``, reference first.
    """
    labels = np.repeat(np.arange(len(CLASSES)), 2)
    pe = np.array([[np.repeat(class_pe[layer], 2) for layer in layers] for *_, class_pe in models])
    return xr.Dataset(
        {schema.PE: (schema.SCORE_DIMS, pe[:, :, None, :])},
        coords={schema.MODEL: [m[0] for m in models], schema.PRUNER: (schema.MODEL, [m[1] for m in models]),
                schema.RATIO: (schema.MODEL, [m[2] for m in models]),
                schema.ACCURACY: (schema.MODEL, [m[3] for m in models]),
                schema.LAYER: list(layers), schema.CAM: ["gradcam++"], schema.IMAGE: np.arange(len(labels)),
                schema.LABEL: (schema.IMAGE, labels),
                schema.CLASS_NAME: (schema.IMAGE, [CLASSES[k] for k in labels])},
        attrs={"pe_config": PEConfig().to_json()})


def reference(layers=("conv",)):
    return (schema.REFERENCE, schema.UNPRUNED, 0.0, 1.0, {layer: (1.0, 1.0, 1.0) for layer in layers})


def test_largest_ratio_up_to_which_everything_holds_ignores_a_later_pass():
    ds = hand_built([reference(),
                     ("l2@0.20", "l2", 0.2, 1.0, {"conv": (0.875, 0.875, 1.0)}),    # PE 0.9167
                     ("l2@0.60", "l2", 0.6, 1.0, {"conv": (0.5, 0.625, 0.875)}),    # PE 0.6667: fails
                     ("l2@0.40", "l2", 0.4, 0.99, {"conv": (0.75, 0.875, 0.875)}),  # PE 0.8333, given out of order
                     ("l2@0.80", "l2", 0.8, 1.0, {"conv": (1.0, 1.0, 1.0)})])       # passes again: ignored
    row = recommend(ds).iloc[0]
    assert (row.pruner, row.layer, row.cam, row.model) == ("l2", "conv", "gradcam++", "l2@0.40")
    assert row.ratio == 0.4
    assert row.pe == pytest.approx(2.5 / 3)
    assert row.accuracy_drop == pytest.approx(0.01)
    assert (row.first_failure, row.fails_on) == (0.6, "pe")
    assert row.failing_classes == ["cat", "dog"]  # lowest first; fox (0.875) is above 0.8


def test_accuracy_can_fail_before_pe():
    ds = hand_built([reference(),
                     ("l1@0.10", "l1", 0.1, 0.99, {"conv": (1.0, 1.0, 1.0)}),
                     ("l1@0.30", "l1", 0.3, 0.97, {"conv": (0.9375, 1.0, 1.0)}),  # drop 0.03 > 0.02
                     ("l1@0.50", "l1", 0.5, 0.90, {"conv": (0.5, 0.5, 0.5)})])
    row = recommend(ds).iloc[0]
    assert (row.ratio, row.model, row.first_failure, row.fails_on) == (0.1, "l1@0.10", 0.3, "accuracy")
    assert row.failing_classes == []  # every class still has PE >= 0.8 there
    assert recommend(ds, max_accuracy_drop=0.05).iloc[0].ratio == 0.3


def test_nothing_passes_gives_ratio_zero_and_no_model():
    ds = hand_built([reference(),
                     ("random@0.10", "random", 0.1, 0.5, {"conv": (0.25, 0.5, 0.75)}),
                     ("random@0.20", "random", 0.2, 0.4, {"conv": (0.25, 0.25, 0.25)})])
    row = recommend(ds).iloc[0]
    assert row.ratio == 0.0 and row.model is None
    assert math.isnan(row.pe) and math.isnan(row.accuracy_drop)
    assert (row.first_failure, row.fails_on, row.failing_classes) == (0.1, "pe+accuracy", ["cat", "dog", "fox"])


def test_everything_passes_reports_no_failure():
    ds = hand_built([reference(), ("l2@0.50", "l2", 0.5, 1.0, {"conv": (0.875, 0.875, 0.875)})])
    row = recommend(ds).iloc[0]
    assert (row.ratio, row.model, row.fails_on, row.failing_classes) == (0.5, "l2@0.50", "", [])
    assert math.isnan(row.first_failure)


def test_bounds_are_inclusive_up_to_rounding():
    # 1.0 - 0.98 is 0.020000000000000018 in floating point: still a 2-point drop.
    ds = hand_built([reference(), ("l2@0.50", "l2", 0.5, 0.98, {"conv": (0.8, 0.8, 0.8)})])
    assert recommend(ds, pe_threshold=0.8, max_accuracy_drop=0.02).iloc[0].ratio == 0.5


def test_each_pruner_and_layer_gets_its_own_row():
    layers = ("early", "late")
    ds = hand_built([reference(layers),
                     ("l2@0.30", "l2", 0.3, 1.0, {"early": (1.0, 1.0, 1.0), "late": (0.5, 0.5, 0.5)}),
                     ("random@0.30", "random", 0.3, 1.0, {"early": (0.5, 0.5, 0.5), "late": (1.0, 1.0, 1.0)})],
                    layers)
    table = recommend(ds).set_index(["pruner", "layer"])
    assert list(table.columns) == list(COLUMNS[2:])
    assert table["ratio"].to_dict() == {("l2", "early"): 0.3, ("l2", "late"): 0.0,
                                        ("random", "early"): 0.0, ("random", "late"): 0.3}


def test_assess_gives_each_models_verdict():
    ds = hand_built([reference(),
                     ("a", "l2", 0.2, 0.99, {"conv": (0.875, 0.875, 0.875)}),
                     ("b", "l2", 0.4, 0.95, {"conv": (0.875, 0.875, 0.875)}),
                     ("c", "l2", 0.6, 0.99, {"conv": (0.5, 0.5, 0.5)})])
    verdicts = assess(ds).squeeze(["layer", "cam"], drop=True)
    assert verdicts["pe"].values == pytest.approx([1.0, 0.875, 0.875, 0.5])
    assert verdicts["accuracy_drop"].values == pytest.approx([0.0, 0.01, 0.05, 0.01])
    assert verdicts["verdict"].values.tolist() == ["", "trusted", "not trusted", "not trusted"]  # no verdict on the reference
    assert verdicts["trustworthy"].values.tolist() == [False, True, False, False]
    assert verdicts["pe_ok"].values.tolist() == [True, True, True, False]
    assert verdicts["reason"].values.tolist()[1:] == ["", "accuracy drop 0.050 > 0.02", "PE 0.500 < 0.8"]


def test_on_the_synthetic_results_random_is_trusted_no_further_than_l2():
    table = recommend(results_dataset(), pe_threshold=0.5, max_accuracy_drop=0.5)
    assert len(table) == 4  # 2 pruners x 2 layers x 1 method
    ratios = table.set_index(["pruner", "layer"])["ratio"]
    for layer in ("features.3", "features.7"):
        assert ratios["random", layer] <= ratios["l2", layer]


def test_models_without_a_ratio_are_refused_with_the_fix():
    ds = hand_built([reference(), ("mine", "unknown", float("nan"), 1.0, {"conv": (1.0, 1.0, 1.0)})])
    with pytest.raises(ValueError, match="give each candidate its ratio"):
        recommend(ds)


@pytest.mark.parametrize("bounds", [{"pe_threshold": 1.5}, {"max_accuracy_drop": -0.1}])
def test_thresholds_outside_zero_one_are_refused(bounds):
    with pytest.raises(ValueError, match="must be in"):
        recommend(results_dataset(), **bounds)


def per_image(models, labels=(0, 0, 1, 1, 2, 2), copies=5):
    """A Dataset with the per-image PEs given, ``[(name, role, pruner, ratio, accuracy, pe (6,))]``, each image
    ``copies`` times (5: ten images per class, as the control rule needs)."""
    labels = np.tile(labels, copies)
    pe = np.tile(np.array([m[5] for m in models], dtype=float), copies)[:, None, None, :]
    return xr.Dataset(
        {schema.PE: (schema.SCORE_DIMS, pe)},
        coords={schema.MODEL: [m[0] for m in models], schema.ROLE: (schema.MODEL, [m[1] for m in models]),
                schema.PRUNER: (schema.MODEL, [m[2] for m in models]),
                schema.RATIO: (schema.MODEL, [m[3] for m in models]),
                schema.ACCURACY: (schema.MODEL, [m[4] for m in models]),
                schema.LAYER: ["conv"], schema.CAM: ["gradcam++"], schema.IMAGE: np.arange(len(labels)),
                schema.LABEL: (schema.IMAGE, labels),
                schema.CLASS_NAME: (schema.IMAGE, [CLASSES[k] for k in labels])},
        attrs={"pe_config": PEConfig().to_json()})


REF = (schema.REFERENCE, schema.REFERENCE, schema.UNPRUNED, 0.0, 1.0, [1.0] * 6)
CONTROL = (schema.CONTROL_FINETUNE, schema.CONTROL, schema.UNPRUNED, 0.0, 0.995, [0.9] * 6)


def test_control_rule_passes_within_the_margin_and_fails_beyond_it():
    ds = per_image([REF, CONTROL,
                    ("l2@0.10", schema.CANDIDATE, "l2", 0.1, 0.99, [0.87] * 6),   # 0.03 below the control
                    ("l2@0.20", schema.CANDIDATE, "l2", 0.2, 0.99, [0.84] * 6),   # 0.06 below: fails
                    ("l2@0.30", schema.CANDIDATE, "l2", 0.3, 0.99, [0.9] * 6)])   # passes again: ignored
    verdicts = assess(ds).squeeze(["layer", "cam"], drop=True)
    # Constant differences: every bootstrap resample has the same mean, so the bound is exact.
    assert verdicts["bound"].sel(model=["l2@0.10", "l2@0.20"]).values == pytest.approx([0.03, 0.06])
    assert verdicts["trustworthy"].sel(model=["l2@0.10", "l2@0.20", "l2@0.30"]).values.tolist() == [True, False, True]
    assert verdicts.attrs["rule"] == "control" and verdicts.attrs["margin"] == 0.05
    assert float(verdicts["control_pe"]) == pytest.approx(0.9)
    row = recommend(ds).iloc[0]
    assert (row.ratio, row.first_failure, row.fails_on) == (0.1, 0.2, "pe")
    assert "non-inferior to control:finetune" in row.rule and row.control_pe == pytest.approx(0.9)
    assert row.failing_classes == ["cat", "dog", "fox"]  # each class 0.06 below the control's
    # The absolute rule on the same data: PE 0.87, 0.84 and 0.9 all pass 0.8.
    assert recommend(ds, rule="absolute").iloc[0].ratio == 0.3


def test_control_rule_fails_a_noisy_candidate_whose_mean_alone_would_pass():
    noisy = [0.9 - 0.03 + d for d in (-0.09, 0.09, -0.09, 0.09, -0.09, 0.09)]  # mean 0.03 below, wide spread
    ds = per_image([REF, CONTROL, ("l2@0.10", schema.CANDIDATE, "l2", 0.1, 0.99, noisy)])
    verdicts = assess(ds).squeeze(["layer", "cam"], drop=True)
    assert float(verdicts["bound"].sel(model="l2@0.10")) > 0.05
    assert not bool(verdicts["trustworthy"].sel(model="l2@0.10"))
    assert bool(assess(ds, margin=0.3).squeeze()["trustworthy"].sel(model="l2@0.10"))


def test_without_a_control_the_rule_falls_back_to_the_threshold_and_says_so():
    ds = per_image([REF, ("l2@0.10", schema.CANDIDATE, "l2", 0.1, 0.99, [0.85] * 6)])
    verdicts = assess(ds)
    assert verdicts.attrs["rule"] == "absolute" and "fallback" in verdicts.attrs["rule_text"]
    assert bool(verdicts["trustworthy"].sel(model="l2@0.10").squeeze())
    assert math.isnan(float(verdicts["control_pe"].squeeze()))
    with pytest.raises(ValueError, match="rule='control' needs the model 'control:finetune'"):
        assess(ds, rule="control")


def test_reordered_models_give_the_same_verdicts_and_controls_never_enter_the_walk():
    models = [REF, CONTROL, ("l2@0.10", schema.CANDIDATE, "l2", 0.1, 0.99, [0.87] * 6),
              ("l2@0.20", schema.CANDIDATE, "l2", 0.2, 0.99, [0.84] * 6),
              (schema.CONTROL_TWIN, schema.CONTROL, schema.UNPRUNED, 0.0, 0.99, [0.6] * 6)]
    ds = per_image(models)
    shuffled = ds.isel(model=[3, 4, 2, 0, 1])  # the reference is no longer first
    for a, b in [(recommend(ds), recommend(shuffled))]:
        assert a.drop(columns="failing_classes").equals(b.drop(columns="failing_classes"))
    verdicts = assess(shuffled).squeeze(["layer", "cam"], drop=True)
    assert float(verdicts["accuracy_drop"].sel(model="l2@0.10")) == pytest.approx(0.01)
    assert float(verdicts["twin_pe"]) == pytest.approx(0.6)
    assert recommend(shuffled).iloc[0].twin_pe == pytest.approx(0.6)
    assert recommend(shuffled).pruner.tolist() == ["l2"]  # neither control is a pruner


def layer_check_models(twin_pe: float, randomised_pe: float, control_pe: float = 0.9):
    return [REF, (schema.CONTROL_FINETUNE, schema.CONTROL, schema.UNPRUNED, 0.0, 0.995, [control_pe] * 6),
            ("l2@0.10", schema.CANDIDATE, "l2", 0.1, 0.99, [0.87] * 6),
            (schema.CONTROL_TWIN, schema.CONTROL, schema.UNPRUNED, 0.0, 0.99, [twin_pe] * 6),
            (schema.RANDOMISED_PREFIX + "conv", schema.CONTROL, schema.UNPRUNED, 0.0, 0.2, [randomised_pe] * 6)]


def test_a_twin_close_to_the_randomised_copy_flags_the_layer():
    checks = layer_checks(per_image(layer_check_models(twin_pe=0.25, randomised_pe=0.2))).squeeze()
    assert float(checks["twin_pe"]) == pytest.approx(0.25) and float(checks["randomised_pe"]) == pytest.approx(0.2)
    assert not bool(checks["usable"]) and checks["not_checked"].item() == ""
    assert checks["why"].item().startswith("twin PE less than 0.1 above the randomised copy's")
    assert not recommend(per_image(layer_check_models(twin_pe=0.25, randomised_pe=0.2))).iloc[0].layer_usable


def test_a_twin_far_above_the_randomised_copy_is_a_scale_not_a_pass_mark():
    checks = layer_checks(per_image(layer_check_models(twin_pe=0.3, randomised_pe=0.05))).squeeze()
    assert bool(checks["usable"]) and checks["why"].item() == ""  # a twin PE of 0.3 is no failure by itself
    assert recommend(per_image(layer_check_models(twin_pe=0.3, randomised_pe=0.05))).iloc[0].layer_usable


def test_maps_that_ignore_the_weights_or_move_under_fine_tuning_alone_are_flagged():
    model_free = layer_checks(per_image(layer_check_models(twin_pe=0.8, randomised_pe=0.35))).squeeze()
    assert model_free["why"].item().startswith("randomised copy's PE above 0.3")
    fragile = layer_checks(per_image(layer_check_models(twin_pe=0.8, randomised_pe=0.14, control_pe=0.12))).squeeze()
    assert fragile["why"].item().startswith("control:finetune PE less than 0.1 above the randomised copy's")
    assert not bool(fragile["usable"])


def test_a_check_whose_control_is_missing_is_not_made_and_says_so():
    models = layer_check_models(twin_pe=0.25, randomised_pe=0.2)
    checks = layer_checks(per_image([models[0], models[2], models[3]])).squeeze()  # no control, no randomised copy
    assert bool(checks["usable"]) and math.isnan(float(checks["randomised_pe"]))
    assert checks["not_checked"].item() == "control:randomised@conv, control:finetune"


def test_a_randomised_copy_changes_the_maps_at_its_layer_and_leaves_the_model_alone(snapshot):
    from pescore_nb import evaluate
    from pescore_nb.controls import randomised
    from test_scale import masked_images, models

    reference, _ = models()
    before = snapshot(reference)
    copy_7 = randomised(reference, "7")
    before.assert_unchanged()
    assert torch.equal(copy_7[0].weight, reference[0].weight)          # below the layer: kept
    assert not torch.equal(copy_7[10].weight, reference[10].weight)    # the classifier above it: redrawn
    assert torch.equal(randomised(reference, "7")[10].weight, copy_7[10].weight)  # seeded
    ds = evaluate(reference, {schema.RANDOMISED_PREFIX + "7": copy_7}, masked_images(), layers=["7"],
                  cams=["gradcam"], progress=False)
    assert ds[schema.ROLE].values.tolist() == ["reference", "control"]
    checks = layer_checks(ds).squeeze()
    assert float(checks["randomised_pe"]) < 0.9  # the maps follow the weights
    with pytest.raises(ValueError, match="not in Sequential"):
        randomised(reference, "features.99")


def test_accuracy_alone_and_attention_gaps_are_reported():
    ds = per_image([REF, CONTROL,
                    ("l2@0.10", schema.CANDIDATE, "l2", 0.1, 0.99, [0.88] * 6),
                    ("l2@0.20", schema.CANDIDATE, "l2", 0.2, 0.985, [0.7] * 6),   # as accurate, attention gone
                    ("l2@0.30", schema.CANDIDATE, "l2", 0.3, 0.95, [0.6] * 6)])
    row = recommend(ds).iloc[0]
    assert (row.accuracy_only_ratio, row.ratio) == (0.2, 0.1)
    gaps = attention_gaps(ds)
    assert gaps[["model_a", "model_b"]].values.tolist() == [["l2@0.10", "l2@0.20"]]
    assert (gaps.pe_a[0], gaps.pe_b[0]) == pytest.approx((0.88, 0.7))
    assert attention_gaps(ds, pe_gap=0.3).empty
