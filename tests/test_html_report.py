"""The shareable HTML report and the rounded recommendation table, from hand-built Datasets."""
import html
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pescore_nb import assess, by_class, html_report, recommend, schema, trust, wording
from synthetic import results_dataset, seeded_results_dataset, user_models_dataset

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
    colours = re.findall(r"<td style='color:(#[0-9a-f]{6})'><b>none trusted</b></td>", section(written, "trust"))
    assert colours and wording.STATE_COLOURS[trust.TRUSTED] not in colours  # never in the pass colour
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


def sections(written: str) -> list[str]:
    """The ids of the report's sections, in order."""
    return re.findall(r"<section id='([a-z]+)'>", written)


def answer_rows(written: str) -> list[list[str]]:
    """The cells (text) of each row of the answer's verdict table."""
    table = section(written, "answer").split("<table class='answer'>")[1].split("</table>")[0]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell.replace("<br>", " | "))) for cell in
             re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])]


def accuracy_alone(ds, pruner: str, budget: float = 0.02) -> str:
    """The largest ratio of ``pruner`` up to which every model's accuracy drop is within ``budget``, from ds.accuracy."""
    accuracy = ds[schema.ACCURACY]
    reference = float(accuracy.sel(model="reference"))
    ratios = sorted({float(r) for r, p in zip(ds.ratio.values, ds.pruner.values) if p == pruner})
    passing = 0.0
    for ratio in ratios:
        models = [m for m, p, r in zip(ds.model.values, ds.pruner.values, ds.ratio.values) if p == pruner and r == ratio]
        if reference - float(accuracy.sel(model=models).mean()) > budget + 1e-9:
            break
        passing = ratio
    return f"{passing:.2f}" if passing else "none"


def test_the_report_leads_with_the_answer_and_ends_with_the_settings(written):
    assert sections(written) == ["answer", "reading", "trust", "models", "figures", "classes", "settings"]
    answer = section(written, "answer")
    assert html_report.QUESTION in answer
    assert "SyntheticNet, the reference (unpruned), against 4 candidates and 2 controls" in answer
    assert "<span class='unnamed'>not named</span>: these results do not record which data set" in answer
    assert "12 test images in 3 classes (class0, class1, class2)" in answer
    assert re.search(r"<figure><img [^>]*src='data:image/png;base64,[^']+'><figcaption><b>Figure 1\.</b> PE-score "
                     r"\(top\) and accuracy", answer)


@pytest.fixture(scope="module")
def trusted(tmp_path_factory):
    """l2 trusted at ratio 0.02 (the control drifts as little as it does), random at no ratio."""
    ds = results_dataset(n_images=30, size=16, ratios=(0.02, 0.6), controls={schema.CONTROL_FINETUNE: 0.0})
    return ds, html_report.report(ds, tmp_path_factory.mktemp("trusted") / "report.html", n_resamples=20,
                                  heatmap_images=1).read_text(encoding="utf-8")


def test_the_answers_verdict_table_gives_each_pruners_trusted_ratio_beside_accuracy_alone(trusted):
    ds, written = trusted
    rows = answer_rows(written)
    table = recommend(ds)
    assert [row[:2] for row in rows] == [["L2-norm filter", "features.3"], ["L2-norm filter", "features.7"],
                                         ["random filter", "features.3"], ["random filter", "features.7"]]
    assert rows[0][2].startswith("trusted up to ratio 0.02 | ")
    checks = trust.layer_checks(ds)
    colours = re.findall(r"<td class='verdict' style='color:(#[0-9a-f]{6})'>", section(written, "answer"))
    for row, found, colour in zip(rows, table.to_dict("records"), colours):
        words = wording.trusted_ratio_text(found)
        assert row[2] == f"{words.headline} | {words.why}"
        assert words.headline == (f"trusted up to ratio {found['ratio']:.2f}" if found["model"] else "none trusted")
        assert (colour == wording.STATE_COLOURS[trust.TRUSTED]) == (found["model"] is not None)
        assert row[3] == accuracy_alone(ds, found["pruner"])
        assert row[4] == f"no check failed (not checked without {checks['not_checked'].sel(layer=row[1]).item()})"
        assert row[5] == "1"


def test_a_named_data_set_is_named_and_seeds_are_listed(seeded, seeded_written, tmp_path):
    assert all(row[5] == "3 (0, 1, 2)" for row in answer_rows(seeded_written))
    named = seeded.assign_attrs(dataset_name="shapes (test split)")
    written = html_report.report(named, tmp_path / "named.html", n_resamples=20,
                                 heatmap_images=1).read_text(encoding="utf-8")
    assert "shapes (test split): 30 test images in 3 classes" in section(written, "answer")


def test_the_report_says_how_to_read_it(written):
    reading = section(written, "reading")
    terms = re.findall(r"<dt[^>]*>([^<]+)</dt>", reading)
    assert terms[:4] == ["PE-score (PE)", "SSIM", "IoU", "Conf"]
    assert {"control:finetune", "control:twin", "control:randomised@&lt;layer&gt;", "The rule",
            "Accuracy alone", "✔ trusted", "✘ not trusted", "? not assessable"} <= set(terms)
    assert f"<dt style='color:{wording.STATE_COLOURS[trust.NOT_TRUSTED]}'>✘ not trusted</dt>" in reading
    assert "PE = SSIM × IoU × Conf" in reading and "CAM ≥ 0.5" in reading  # the Dataset's PEConfig
    assert ("loses at most 2 points of accuracy against the reference and, with 95% confidence, its PE lies at "
            "most 0.05 below the PE of control:finetune") in reading


def test_every_figure_has_a_numbered_caption_in_order(seeded_written):
    numbers = [int(n) for n in re.findall(r"<figcaption><b>Figure (\d+)\.</b>", seeded_written)]
    assert numbers == list(range(1, len(re.findall(r"<img ", seeded_written)) + 1)) and len(numbers) == 3 + 2


def test_the_settings_are_tables_not_json(written, ds, tmp_path):
    settings = section(written, "settings")
    assert "<th>pe_config</th><td><table class='nested'>" in settings and "<th>iou_threshold</th><td>0.5</td>" in settings
    assert "{&quot;" not in settings and '{"' not in settings
    seeds = [-1, 0, 1, 2, 3, -1, -1]
    provenance = [json.dumps({"pruning_seed": seed, "finetune": {"epochs": 2, "lr": 0.001}}) for seed in seeds]
    with_provenance = ds.assign_coords(provenance=("model", provenance))
    settings = section(html_report.report(with_provenance, tmp_path / "provenance.html", n_resamples=20,
                                          heatmap_images=1).read_text(encoding="utf-8"), "settings")
    assert "<tr><th>finetune.epochs</th><td>2</td></tr><tr><th>finetune.lr</th><td>0.001</td></tr>" in settings
    by_model = settings.split("<p>By model:</p>")[1]
    assert re.findall(r"<td>(-?\d)</td>", by_model) == [str(seed) for seed in seeds]  # pruning_seed by model


@pytest.fixture(scope="module")
def user_models():
    return user_models_dataset(n_images=30, size=16, layers=("features.3",),
                               controls={schema.CONTROL_FINETUNE: 0.05})


def test_a_report_of_user_models_without_ratios_has_their_figures_and_verdicts(user_models, tmp_path):
    written = html_report.report(user_models, tmp_path / "report.html", n_resamples=20,
                                 heatmap_images=2).read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption><b>Figure \d+\.</b> ([^<]+)</figcaption>", written)
    assert len(captions) >= 3 and len(re.findall(r"<img ", written)) == len(captions)
    assert captions[0].startswith("Each model at its accuracy (across) and PE-score (up)")  # the key figure
    assert captions[1].startswith("PE-score of each class for each candidate")
    assert [caption.split(" looks beside")[0] for caption in captions[2:]] == [
        f"Where {model}" for model in ("mine-small", "mine-medium", "mine-large")]
    assert "these candidates have none" not in written
    verdicts = assess(user_models)
    rows = answer_rows(written)
    assert [row[0] for row in rows] == ["mine-small", "mine-medium", "mine-large"]
    reference = float(user_models.accuracy.sel(model="reference"))
    for row in rows:
        words = wording.verdict_text(verdicts.sel(model=row[0], layer="features.3", cam="gradcam++"))
        assert row[2] == f"{words.headline} | {words.why}"
        drop = reference - float(user_models.accuracy.sel(model=row[0]))
        assert row[3] == (f"{'within' if drop <= 0.02 else 'outside'} the budget: accuracy drop "
                          f"{wording.points(drop)} {'≤' if drop <= 0.02 else '>'} 2 points")
