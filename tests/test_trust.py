"""recommend and assess on hand-built Datasets whose answers are known by hand."""
import math

import numpy as np
import pytest
import xarray as xr

from pescore_nb import schema
from pescore_nb.metrics import PEConfig
from pescore_nb.trust import COLUMNS, assess, recommend
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
    assert verdicts["trustworthy"].values.tolist() == [True, True, False, False]
    assert verdicts["pe_ok"].values.tolist() == [True, True, True, False]


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
