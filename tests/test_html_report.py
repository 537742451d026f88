"""The shareable HTML report and the rounded recommendation table, from hand-built Datasets."""
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pescore_nb import assess, by_class, html_report, recommend, schema, trust
from synthetic import results_dataset, seeded_results_dataset

CONTROLS = {schema.CONTROL_FINETUNE: 0.05, schema.CONTROL_TWIN: 0.3}


@pytest.fixture(scope="module")
def ds():
    return results_dataset(n_images=12, size=16, layers=("features.3",), controls=CONTROLS)


@pytest.fixture(scope="module")
def written(ds, tmp_path_factory):
    path = html_report.report(ds, tmp_path_factory.mktemp("report") / "report.html", n_resamples=50,
                              heatmap_images=2)
    return path.read_text(encoding="utf-8")


def test_importing_the_report_module_loads_no_matplotlib():
    code = "import pescore_nb.html_report, sys; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_report_is_one_self_contained_file(written):
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", written)
    assert sources and all(s.startswith(("data:image/png;base64,", "#")) for s in sources)
    assert not re.search(r"https?://", written)
    assert len(re.findall(r"<img ", written)) == 3 + 2  # pe_vs_ratio, pe_vs_cost, drop_scatter, a grid per pruner


def test_the_report_holds_settings_models_verdicts_and_classes(ds, written):
    assert "SyntheticNet" in written and "pe_config" in written
    for model in ds.model.values.tolist():
        assert f"<td>{model}</td>" in written
    assert "non-inferior to control:finetune" in written  # the rule, as a sentence
    assert "<td class='not-trusted'>none trusted</td>" in written
    pe = by_class(ds).sel(model="random@0.60", layer="features.3", cam="gradcam++")
    row = re.search(r"<th>random@0.60</th>(.*?)</tr>", written.split("id='classes'")[1], re.S).group(1)
    assert re.findall(r"<td>([0-9.]+)</td>", row)[:3] == [f"{v:.3f}" for v in pe.values]


def test_format_recommendation_rounds_and_says_none_trusted():
    ds = results_dataset(n_images=30, size=16, ratios=(0.02, 0.6), controls={schema.CONTROL_FINETUNE: 0.0})
    raw = recommend(ds)
    table = html_report.format_recommendation(raw)
    l2 = table[(table.pruner == "L2-norm filter") & (table.layer == "features.3")].iloc[0]
    found = raw[(raw.pruner == "l2") & (raw.layer == "features.3")].iloc[0]
    assert l2["trusted ratio"] == "0.02" and l2["model"] == "l2@0.02"
    assert l2["PE"] == f"{found.pe:.3f}" and l2["first failure"] == "0.60"
    random = table[table.pruner == "random filter"].iloc[0]
    if raw[raw.pruner == "random"].iloc[0].model is None:
        assert random["trusted ratio"] == "none trusted" and random["PE"] == ""
    assert not table.isna().any().any() and "nan" not in table.to_string().lower()


def test_format_recommendation_of_a_row_without_a_trusted_model():
    raw = pd.DataFrame([{"pruner": "senpis", "layer": "a", "cam": "gradcam", "ratio": 0.0, "model": None,
                         "pe": np.nan, "accuracy_drop": np.nan, "first_failure": 0.1, "fails_on": "pe",
                         "failing_classes": ["c1", "c2", "c3", "c4", "c5", "c6"], "rule": "r",
                         "control_pe": 0.91234, "twin_pe": np.nan}])
    row = html_report.format_recommendation(raw).iloc[0]
    assert (row["pruner"], row["trusted ratio"], row["PE"], row["control PE"], row["twin PE"]) == \
        ("SeNPIS-Faster", "none trusted", "", "0.912", "")
    assert row["failing classes"] == "c1, c2, c3, c4 (+2 more)"


def test_report_refuses_a_path_that_is_not_html(ds, tmp_path):
    with pytest.raises(ValueError, match=r"ending in \.html"):
        html_report.report(ds, tmp_path / "report.pdf")


def test_the_report_shows_the_layer_checks(ds, written):
    twin_pe = float(trust.layer_checks(ds)["twin_pe"].sel(layer="features.3", cam="gradcam++"))
    section = written.split("<h3>Layer checks</h3>")[1].split("</table>")[0]
    assert f"<td>{twin_pe:.3f}</td>" in section and "features.3" in section
    assert (f"randomised copy&#x27;s PE is above {trust.RANDOMISED_MAX_PE:g}" in section
            and f"less than {trust.MIN_PE_ABOVE_RANDOMISED:g} above" in section)  # the rule of layer_checks
    assert "<td>control:randomised@features.3</td>" in section  # no randomised copy: that check was not made


SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def seeded():
    return seeded_results_dataset(seeds=SEEDS, layers=("features.3",))


@pytest.fixture(scope="module")
def seeded_written(seeded, tmp_path_factory):
    path = html_report.report(seeded, tmp_path_factory.mktemp("seeded") / "report.html", n_resamples=50,
                              heatmap_images=2)
    return path.read_text(encoding="utf-8")


def section(written: str, name: str) -> str:
    return written.split(f"<section id='{name}'>")[1].split("</section>")[0]


def class_weighted_pe(ds, models: list[str]) -> np.ndarray:
    """The PE ``(models,)`` at features.3, from ``ds.pe`` and the support class weights."""
    labels = ds[schema.LABEL].values
    pe = ds[schema.PE].sel(model=models, layer="features.3").isel(cam=0).values
    return sum((labels == k).mean() * pe[:, labels == k].mean(axis=1) for k in np.unique(labels))


def test_the_model_table_shows_each_group_with_the_mean_and_range_over_its_seeds(seeded, seeded_written):
    models = section(seeded_written, "models")
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>(.*?)</tr>", models, re.S)
    assert [name for name, _ in rows] == ["reference", "l2@0.30", "l2@0.60", "random@0.30", "random@0.60",
                                          "control:finetune", "control:twin"]
    cells = {name: re.findall(r"<td[^>]*>([^<]*)</td>", row) for name, row in rows}
    for group in ("l2@0.60", "control:finetune"):
        pe = class_weighted_pe(seeded, [f"{group}/seed{seed}" for seed in SEEDS])
        accuracy = seeded[schema.ACCURACY].sel(model=[f"{group}/seed{seed}" for seed in SEEDS]).values
        assert f"{pe.mean():.3f} ({pe.min():.3f}–{pe.max():.3f})" in cells[group]
        assert f"{accuracy.mean():.3f} ({accuracy.min():.3f}–{accuracy.max():.3f})" in cells[group]
    assert "Fine-tuning seeds 0, 1, 2" in section(seeded_written, "settings")
    assert "control:finetune, control:twin</td>" in section(seeded_written, "settings")  # groups, not seeds


def test_the_report_says_what_the_bound_covers_and_gives_the_twin_as_a_scale(seeded, seeded_written):
    verdicts = section(seeded_written, "trust")
    assert "the bound covers the test images and 3 training seeds" in verdicts
    twin = class_weighted_pe(seeded, [schema.CONTROL_TWIN])[0]
    candidates = ["l2@0.30", "l2@0.60", "random@0.30", "random@0.60"]
    below = [group for group in candidates
             if class_weighted_pe(seeded, [f"{group}/seed{seed}" for seed in SEEDS]).mean() < twin]
    assert below
    sentence = f"An independently retrained model (control:twin) scores {twin:.2f} at features.3"
    assert f"{sentence}; {', '.join(below[:-1])} and {below[-1]} score below it" in section(seeded_written, "models")
    assert f"{sentence}; no trusted candidate scores below it." in verdicts
    figures = section(seeded_written, "figures")
    assert "the mean over the fine-tuning seeds 0, 1, 2" in figures and "CAMs: seed 0's models" in figures


def test_a_single_seed_report_says_its_bound_leaves_training_out(written):
    assert ("the bound covers the test images only, not training randomness: rerun with several seeds "
            "(prune.sweep(seeds=3))") in section(written, "trust")


def test_the_three_verdict_states_are_named_and_coloured(tmp_path):
    ds = seeded_results_dataset(seeds=SEEDS, ratios=(0.02, 0.6), n_images=30, layers=("features.3",))
    ds = ds.drop_sel(model=["l2@0.02/seed2", "l2@0.60/seed2", f"{schema.CONTROL_FINETUNE}/seed2"])
    written = html_report.report(ds, tmp_path / "report.html", n_resamples=20, heatmap_images=1,
                                 max_accuracy_drop=1.0).read_text(encoding="utf-8")  # only PE decides
    models = section(written, "models")
    assert re.search(r"<td>l2@0.02</td>.*?<td class='trusted'>trusted</td>", models, re.S)  # drifts less than control
    assert re.search(r"<td>l2@0.60</td>.*?<td class='not-trusted'>not trusted: PE</td>", models, re.S)
    assert re.search(r"<td>random@0.02</td>.*?<td class='not-assessable'>not assessable: no control of seed 2",
                     models, re.S)  # seed 2 has no control of its own
    style = written.split("<style>")[1].split("</style>")[0]
    colours = {name: re.search(rf"td\.{name} {{ color: (#[0-9a-f]{{6}})", style)[1]
               for name in ("trusted", "not-trusted", "not-assessable")}
    assert len(set(colours.values())) == 3  # each state its own colour
