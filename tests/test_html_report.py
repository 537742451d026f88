"""The shareable HTML report and the rounded recommendation table, from hand-built Datasets."""
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pescore_nb import by_class, html_report, recommend, schema
from synthetic import results_dataset

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
    assert "<td class='fail'>none trusted</td>" in written
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
    from pescore_nb.trust import layer_checks

    twin_pe = float(layer_checks(ds)["twin_pe"].sel(layer="features.3", cam="gradcam++"))
    section = written.split("<h3>Layer checks</h3>")[1].split("</table>")[0]
    assert f"<td>{twin_pe:.3f}</td>" in section and "features.3" in section
