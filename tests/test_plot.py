"""Every figure renders from a hand-built Dataset with the expected lines, labels and panels."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pescore_nb import plot, schema  # noqa: E402
from pescore_nb.scores import score  # noqa: E402
from synthetic import results_dataset  # noqa: E402

PRUNERS, RATIOS = ("l2", "random"), (0.3, 0.6)
FAST = {"n_resamples": 100}
PICK = {"layer": "features.3", "cam": "gradcam++"}  # a dict: .sel(method=...) means the fill method


@pytest.fixture(scope="module")
def ds():
    return results_dataset(n_images=12, size=16, pruners=PRUNERS, ratios=RATIOS)


def legend_texts(ax_or_fig) -> list[str]:
    legends = ax_or_fig.legends if isinstance(ax_or_fig, Figure) else [ax_or_fig.get_legend()]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def line(ax, label):
    (found,) = [candidate for candidate in ax.get_lines() if candidate.get_label() == label]
    return found


def test_pe_vs_ratio_draws_a_banded_line_per_pruner_from_the_reference(ds):
    fig = plot.pe_vs_ratio(ds, **FAST)
    score_ax, accuracy_ax = fig.axes
    assert legend_texts(score_ax) == [*PRUNERS, schema.REFERENCE]
    assert score_ax.get_ylabel() == "PE-score" and accuracy_ax.get_ylabel() == "Accuracy"
    assert accuracy_ax.get_xlabel() == "Pruning ratio"
    expected = score(ds).sel(PICK)
    for pruner in PRUNERS:
        models = ["reference"] + [f"{pruner}@{r:.2f}" for r in RATIOS]
        drawn = line(score_ax, pruner)
        np.testing.assert_allclose(drawn.get_xdata(), [0.0, *RATIOS])
        np.testing.assert_allclose(drawn.get_ydata(), expected.sel(model=models))
        np.testing.assert_allclose(line(accuracy_ax, pruner).get_ydata(), ds[schema.ACCURACY].sel(model=models))
    for ax in fig.axes:
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(PRUNERS)
    assert line(score_ax, schema.REFERENCE).get_xdata().tolist() == [0.0]


def test_pe_vs_ratio_picks_the_layer(ds):
    fig = plot.pe_vs_ratio(ds, layer="features.7", **FAST)
    expected = score(ds).sel({"layer": "features.7", "cam": "gradcam++", "model": "random@0.60"})
    assert line(fig.axes[0], "random").get_ydata()[-1] == pytest.approx(float(expected))
    with pytest.raises(KeyError, match="pass one of"):
        plot.pe_vs_ratio(ds, layer="features.99")


def test_pe_vs_ratio_without_predictions_draws_the_accuracy_coordinate_unbanded(ds):
    fig = plot.pe_vs_ratio(ds.drop_vars(schema.PRED), **FAST)
    assert not any(isinstance(c, PolyCollection) for c in fig.axes[1].collections)
    assert line(fig.axes[1], "l2").get_ydata()[1] == pytest.approx(float(ds[schema.ACCURACY][1]))


def test_class_bars_one_bar_per_class_and_pruner_with_intervals(ds):
    fig = plot.class_bars(ds, ratio=0.6, **FAST)
    (ax,) = fig.axes
    assert len(ax.patches) == len(PRUNERS) * 3
    assert [t.get_text() for t in ax.get_xticklabels()] == ["class0", "class1", "class2"]
    assert legend_texts(ax) == list(PRUNERS)
    assert len(ax.containers) == 2 * len(PRUNERS)  # a BarContainer and an ErrorbarContainer per pruner
    assert ax.get_ylabel() == "PE-score at ratio 0.6"
    with pytest.raises(ValueError, match=r"ratios \[0.3, 0.6\]"):
        plot.class_bars(ds, ratio=0.5)


def test_heatmap_grid_images_by_models_over_the_input(ds):
    fig = plot.heatmap_grid(ds, images=3)
    panels = fig.axes[:-1]  # the last axes is the colour bar
    assert len(panels) == 3 * (1 + len(RATIOS))
    assert [ax.get_title() for ax in panels[:3]] == ["reference", "0.3", "0.6"]
    assert fig._suptitle.get_text() == "CAMs as the l2 pruning ratio grows"
    assert [panels[i * 3].get_ylabel() for i in range(3)] == ["class0", "class1", "class2"]
    assert all(len(ax.get_images()) == 2 for ax in panels)
    np.testing.assert_allclose(panels[2].get_images()[1].get_array(),
                               ds[schema.HEATMAP].sel(model="l2@0.60", layer="features.3").isel(cam=0, image=0))
    assert fig.axes[-1].get_ylabel() == "CAM"


def test_heatmap_grid_named_images_other_pruner_and_no_input(ds):
    fig = plot.heatmap_grid(ds.drop_vars(schema.INPUT), pruner="random", images=[4, 5])
    panels = fig.axes[:-1]
    assert len(panels) == 2 * 3 and all(len(ax.get_images()) == 1 for ax in panels)
    assert panels[1].get_title() == "0.3" and "random" in fig._suptitle.get_text()
    with pytest.raises(KeyError, match="No pruner 'taylor'"):
        plot.heatmap_grid(ds, pruner="taylor")


def test_drop_scatter_places_each_model_at_its_two_drops(ds):
    fig = plot.drop_scatter(ds)
    (ax,) = fig.axes
    assert legend_texts(fig) == [*PRUNERS, "equal drop", "2 % accuracy drop"]
    assert ax.get_xlabel() == "Accuracy drop" and ax.get_ylabel() == "PE-score drop"
    pe = score(ds).sel(PICK)
    models = [f"random@{r:.2f}" for r in RATIOS]
    drawn = line(ax, "random")
    np.testing.assert_allclose(drawn.get_xdata(), ds[schema.ACCURACY][0] - ds[schema.ACCURACY].sel(model=models))
    np.testing.assert_allclose(drawn.get_ydata(), pe[0] - pe.sel(model=models))
    assert sorted(t.get_text() for t in ax.texts) == ["0.3", "0.3", "0.6", "0.6"]


def test_decomposition_one_panel_per_pruner_with_the_three_terms_and_pe(ds):
    fig = plot.decomposition(ds)
    assert [ax.get_title(loc="left") for ax in fig.axes] == list(PRUNERS)
    assert legend_texts(fig.axes[0]) == ["SSIM", "IoU", "Conf", "PE-score"]
    iou = score(ds, schema.IOU).sel(PICK)
    np.testing.assert_allclose(line(fig.axes[1], "IoU").get_ydata(),
                               iou.sel(model=["reference", "random@0.30", "random@0.60"]))


def test_layer_ratio_map_holds_every_layer_at_every_ratio(ds):
    fig = plot.layer_ratio_map(ds, pruner="random")
    ax = fig.axes[0]
    table = score(ds).sel({"model": ["reference", "random@0.30", "random@0.60"], "cam": "gradcam++"})
    np.testing.assert_allclose(ax.get_images()[0].get_array(), table.transpose("layer", "model"))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ref", "0.3", "0.6"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["features.3", "features.7"]
    assert len(ax.texts) == 2 * 3 and fig.axes[1].get_ylabel() == "PE-score"


MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-", ".svg": b"<?xml"}


@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_figures_save_as_valid_files(ds, tmp_path, suffix):
    path = tmp_path / "nested" / f"figure{suffix}"
    fig = plot.layer_ratio_map(ds, path=path)
    assert isinstance(fig, Figure) and path.read_bytes().startswith(MAGIC[suffix])
    if suffix == ".svg":
        assert b"<svg" in path.read_bytes()[:2000]
    if suffix == ".png":
        width, height = np.frombuffer(path.read_bytes()[16:24], dtype=">u4")
        assert width <= 3.7 * 300 and height > 100  # one column at 300 dpi


def test_save_refuses_an_unknown_format(ds, tmp_path):
    with pytest.raises(ValueError, match="suffix must be one of"):
        plot.drop_scatter(ds, path=tmp_path / "figure.jpg")


def test_every_figure_is_one_column_wide(ds):
    figures = [plot.pe_vs_ratio(ds, **FAST), plot.class_bars(ds, 0.3, **FAST), plot.heatmap_grid(ds),
               plot.drop_scatter(ds), plot.decomposition(ds), plot.layer_ratio_map(ds)]
    assert all(fig.get_figwidth() == plot.COLUMN_WIDTH for fig in figures)
