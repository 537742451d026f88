"""``notebooks/05_vision_transformers.ipynb`` tells the truth: each claim of its prose (quoted above
each check) against the ``FACTS:`` line of the executed notebook and the Datasets it wrote.

It runs through ``tests/test_notebooks.py``'s ``executed`` fixture (which also checks that it runs in
under five minutes, is stored without outputs and types no computed number); the zoo ViT and its
twin are trained, or found in the cache, before the notebook's clock starts.
"""
import math

import pytest

from pescore_nb import trust, wording
from test_notebooks import executed, trained_zoo  # noqa: F401  (fixtures)

NAME = "05_vision_transformers"
NAMES = {"vgg": "VGG", "vit": "ViT"}


@pytest.fixture(scope="module")
def run(executed):  # noqa: F811  (its trained_zoo loads the ViT and its twin first)
    return executed(NAME)


def outputs(run) -> str:
    return "\n".join(output.get("text", "") for cell in run.notebook.cells if cell.cell_type == "code"
                     for output in cell.outputs if output.output_type == "stream")


@pytest.mark.slow
def test_both_models_are_pruned_at_three_ratios_with_three_seeds(run):
    """"Both models are pruned by the filter norm (`l2`) at three ratios, and each pruned copy is
    fine-tuned with three seeds"; the ViT's layer is "the last block's input norm"."""
    facts = run.facts
    assert {row["model"] for row in facts["table"]} == {"VGG", "ViT"}
    for model in ("VGG", "ViT"):
        assert sorted(row["ratio"] for row in facts["table"] if row["model"] == model) == [0.1, 0.3, 0.5]
    assert facts["n_seeds"] == 3
    (layer,) = facts["cam_layers"]["vit"]
    assert layer.endswith(".ln_1") and layer.startswith("encoder.layers.encoder_layer_3")


@pytest.mark.slow
def test_pruning_shrinks_both_models_and_the_table_says_which_keeps_its_maps(run):
    """"the share of the reference's parameters the pruned copy keeps" falls with the ratio; "The last
    line says, at each ratio, which model keeps its maps closer to its reference"."""
    facts = run.facts
    for model in ("VGG", "ViT"):
        rows = sorted((row for row in facts["table"] if row["model"] == model), key=lambda row: row["ratio"])
        kept = [row["params kept"] for row in rows]
        assert 1 > kept[0] > kept[1] > kept[2] > 0
        assert all(row["PE lowest seed"] <= row["PE"] <= row["PE highest seed"] for row in rows)
    for ratio, said in facts["closer"].items():
        pe = {row["model"]: row["PE"] for row in facts["table"] if f"{row['ratio']:.2f}" == ratio}
        assert said == max(pe, key=pe.get)
        assert f"at ratio {ratio}, the {said}" in outputs(run)


@pytest.mark.slow
def test_the_controls_are_reported_and_the_verdict_worded_by_the_vocabulary(run):
    """"the twin's PE, the randomised copy's PE ..., and the share of the reference's map energy inside
    the objects"; the verdict "in the words every view of pescore_nb uses"."""
    facts = run.facts
    for arch in ("vgg", "vit"):
        check = facts["checks"][arch]
        assert all(math.isfinite(check[key]) for key in ("twin_pe", "randomised_pe", "energy_in_mask"))
        assert f"Twin PE {check['twin_pe']:.2f}, randomised-copy PE {check['randomised_pe']:.2f}" in outputs(run)
        if check["twin_pe"] - check["randomised_pe"] < trust.MIN_PE_ABOVE_RANDOMISED:
            # "the checks flag the layer, every candidate there is 'not assessable', and the line says why"
            assert not check["usable"]
            line = next(line for line in outputs(run).splitlines() if line.startswith(f"{NAMES[arch]}: "))
            assert wording.NONE_TRUSTED in line and "not assessable" in line and "layer flagged" in line
        (row,) = facts["recommend"][arch]
        if row["model"] is None:
            assert f": {wording.NONE_TRUSTED}." in outputs(run)
        else:
            assert f"trusted up to ratio {row['ratio']:.2f}" in outputs(run)
    assert "up to ratio 0.00" not in outputs(run)


@pytest.mark.slow
def test_the_explorer_opens_on_the_vit_results(run):
    """"The explorer reads only the Dataset, so it works for the ViT as for any CNN"."""
    assert run.facts["explorer_pruner"] == "l2"
    widgets = [output for cell in run.notebook.cells if cell.cell_type == "code" for output in cell.outputs
               if output.output_type == "display_data" and "application/vnd.jupyter.widget-view+json" in output.data]
    assert widgets, "the explorer cell shows no widget"
