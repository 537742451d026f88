"""The trust vocabulary (pescore_nb.wording): one state, one colour and one sentence per verdict, in
every view; numbers named, accuracy in points, no raw tokens."""
import re

import numpy as np
import pytest
import xarray as xr

import pescore_nb
from pescore_nb import cli, schema, wording
from pescore_nb.trust import NOT_ASSESSABLE, NOT_TRUSTED, TRUSTED
from tests.synthetic import results_dataset

PASS_COLOUR = wording.STATE_COLOURS[TRUSTED]
RANDOMISED = schema.RANDOMISED_PREFIX + "features.3"


def one_pruner_trusted_the_other_not(**controls: float) -> xr.Dataset:
    """l2 trusted at 0.02 (its maps barely drift from the fine-tuned control's), random losing 8.3 accuracy
    points at every ratio: the case where the explorer printed "trusted up to ratio 0.00" in green."""
    ds = results_dataset(n_images=30, size=16, ratios=(0.02, 0.6),
                         controls={schema.CONTROL_FINETUNE: 0.0, **controls})
    accuracy = ds[schema.ACCURACY].values.copy()
    accuracy[ds[schema.PRUNER].values == "random"] = accuracy[0] - 0.083
    return ds.assign_coords({schema.ACCURACY: (schema.MODEL, accuracy)})


def rows_by_pruner(table, layer: str = "features.3") -> dict:
    return {row["pruner"]: row for row in table.to_dict("records") if row["layer"] == layer}


def test_a_pruner_with_no_trusted_ratio_gets_the_not_trusted_colour_and_sentence():
    ds = one_pruner_trusted_the_other_not()
    rows = rows_by_pruner(pescore_nb.recommend(ds))
    assert rows["l2"]["model"] == "l2@0.02" and rows["random"]["model"] is None  # the premise
    none = wording.trusted_ratio_text(rows["random"])
    assert (none.state, none.headline) == (NOT_TRUSTED, "none trusted")
    assert none.colour == wording.STATE_COLOURS[NOT_TRUSTED]
    assert none.colour != PASS_COLOUR
    assert none.sentence == "none trusted: the smallest ratio 0.02 fails on PE and accuracy"
    nan_model = wording.trusted_ratio_text({**rows["random"], "model": np.nan})  # a table that turned None to NaN
    assert (nan_model.state, nan_model.headline) == (NOT_TRUSTED, "none trusted")
    trusted = wording.trusted_ratio_text(rows["l2"])
    assert (trusted.state, trusted.headline, trusted.colour) == (TRUSTED, "trusted up to ratio 0.02", PASS_COLOUR)
    assert trusted.why == "ratio 0.60 fails on PE and accuracy"


def test_a_verdict_names_its_numbers_and_gives_accuracy_in_points():
    ds = one_pruner_trusted_the_other_not()
    verdicts = pescore_nb.assess(ds).sel(layer="features.3", cam="gradcam++")
    drop = float(verdicts.accuracy_drop.sel(model="random@0.02"))
    assert drop == pytest.approx(0.083)
    words = wording.verdict_text(verdicts.sel(model="random@0.02"))
    assert (words.state, words.headline) == (NOT_TRUSTED, "not trusted")
    assert words.colour == wording.STATE_COLOURS[NOT_TRUSTED]
    assert "accuracy drop 8.3 points > budget 2 points" in words.sentence
    pe, bound = float(verdicts.pe.sel(model="random@0.02")), float(verdicts.bound.sel(model="random@0.02"))
    assert f"model PE (class-weighted) {pe:.3f}, upper bound of its gap to control:finetune {bound:.3f}" in words.why
    assert words.short == "not trusted: PE and accuracy"
    trusted = wording.verdict_text(verdicts.sel(model="l2@0.02"))
    assert (trusted.state, trusted.short, trusted.colour) == (TRUSTED, "trusted", PASS_COLOUR)
    assert re.search(r"accuracy drop \d+(\.\d)? points? ≤ budget 2 points", trusted.why)
    reference = wording.verdict_text(verdicts.sel(model=schema.REFERENCE))
    assert (reference.state, reference.short) == (wording.NOT_JUDGED, "(reference)")


def test_the_rule_and_what_failed_are_words_with_the_budget_in_points():
    ds = one_pruner_trusted_the_other_not()
    rule = wording.rule_words(pescore_nb.assess(ds).attrs)
    assert rule.startswith("accuracy drop ≤ budget 2 points and PE non-inferior to control:finetune")
    assert "0.02" not in rule and "<=" not in rule
    absolute = wording.rule_words(pescore_nb.assess(ds, rule="absolute", pe_threshold=0.7,
                                                     max_accuracy_drop=0.05).attrs)
    assert absolute == "accuracy drop ≤ budget 5 points and model PE (class-weighted) ≥ threshold 0.7"
    assert wording.failure_text("pe+accuracy") == "PE and accuracy"
    assert (wording.points(0.083), wording.points(0.01), wording.points(0.02)) == ("8.3 points", "1 point", "2 points")


def test_a_verdict_on_a_flagged_layer_is_one_combined_state_that_says_what_to_do():
    ds = one_pruner_trusted_the_other_not(**{schema.CONTROL_TWIN: 0.01, RANDOMISED: 0.05})
    checks = pescore_nb.trust.layer_checks(ds)
    flag = wording.layer_flag_of(checks, {schema.LAYER: "features.3", schema.CAM: "gradcam++"})
    assert flag.startswith("randomised copy's PE above 0.3")  # the premise: the maps ignore the weights
    verdict = pescore_nb.assess(ds).sel(model="l2@0.02", layer="features.3", cam="gradcam++")
    assert str(verdict.verdict.item()) == TRUSTED  # by the rule alone
    words = wording.verdict_text(verdict, flag)
    assert words.state == NOT_ASSESSABLE and words.colour == wording.STATE_COLOURS[NOT_ASSESSABLE] != PASS_COLOUR
    assert words.headline == "trusted by the rule, but this layer is flagged"
    assert words.why.startswith(f"its maps cannot carry a verdict ({flag}); judge the candidates at another layer")
    assert words.short == "not assessable: layer flagged (trusted by the rule)"
    over_budget = wording.verdict_text(pescore_nb.assess(ds).sel(model="random@0.02", layer="features.3",
                                                               cam="gradcam++"), flag)
    assert over_budget.state == NOT_TRUSTED  # accuracy does not depend on the maps: the flag cannot save it
    assert "besides, this layer is flagged" in over_budget.why
    rows = rows_by_pruner(pescore_nb.recommend(ds))
    ratio = wording.trusted_ratio_text(rows["l2"], flag)
    assert (ratio.state, ratio.headline) == (NOT_ASSESSABLE, "trusted up to ratio 0.02, but this layer is flagged")


def test_the_cli_speaks_the_same_words():
    ds = one_pruner_trusted_the_other_not(**{schema.CONTROL_TWIN: 0.01, RANDOMISED: 0.05})
    table = pescore_nb.recommend(ds)
    printed = "\n".join([cli._model_table(ds, pescore_nb.assess(ds)), cli._recommendation(table),
                         cli._findings(ds, table)])
    assert "pe+accuracy" not in printed and "<= 0.02" not in printed and "trusts up to 0.00" not in printed
    assert "budget 2 points" in printed
    assert "the rule says none trusted: the smallest ratio 0.02 fails on PE and accuracy" in printed
    assert "the rule says trusted up to ratio 0.02, but this layer is flagged: its maps cannot carry" in printed
    l2 = next(line for line in printed.splitlines() if line.startswith("l2@0.02 "))
    assert "features.3: not assessable: layer flagged (trusted by the rule); features.7: trusted" in l2
