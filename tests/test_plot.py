"""Every figure renders from a hand-built Dataset with the expected lines, labels and panels."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import matplotlib.text  # noqa: E402
from pescore_nb import plot, schema  # noqa: E402
from pescore_nb.scores import score  # noqa: E402
from synthetic import results_dataset, seeded_results_dataset, user_models_dataset  # noqa: E402

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
    assert legend_texts(fig)[:3] == ["L2-norm filter", "random filter", schema.REFERENCE]
    assert "layer features.3 · Grad-CAM++" in score_ax.get_title()
    assert score_ax.get_ylabel() == "PE-score" and accuracy_ax.get_ylabel() == "Accuracy"
    assert accuracy_ax.get_xlabel() == "Pruning ratio"
    expected = score(ds).sel(PICK)
    for pruner in PRUNERS:
        models = ["reference"] + [f"{pruner}@{r:.2f}" for r in RATIOS]
        drawn = line(score_ax, plot.pruner_name(pruner))
        np.testing.assert_allclose(drawn.get_xdata(), [0.0, *RATIOS])
        np.testing.assert_allclose(drawn.get_ydata(), expected.sel(model=models))
        np.testing.assert_allclose(line(accuracy_ax, plot.pruner_name(pruner)).get_ydata(), ds[schema.ACCURACY].sel(model=models))
    for ax in fig.axes:
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(PRUNERS)
    assert line(score_ax, schema.REFERENCE).get_xdata().tolist() == [0.0]


def test_pe_vs_ratio_picks_the_layer(ds):
    fig = plot.pe_vs_ratio(ds, layer="features.7", **FAST)
    expected = score(ds).sel({"layer": "features.7", "cam": "gradcam++", "model": "random@0.60"})
    assert line(fig.axes[0], "random filter").get_ydata()[-1] == pytest.approx(float(expected))
    with pytest.raises(KeyError, match="pass one of"):
        plot.pe_vs_ratio(ds, layer="features.99")


def test_pe_vs_ratio_without_predictions_draws_the_accuracy_coordinate_unbanded(ds):
    fig = plot.pe_vs_ratio(ds.drop_vars(schema.PRED), **FAST)
    assert not any(isinstance(c, PolyCollection) for c in fig.axes[1].collections)
    assert line(fig.axes[1], "L2-norm filter").get_ydata()[1] == pytest.approx(float(ds[schema.ACCURACY][1]))


def test_class_bars_one_bar_per_class_and_pruner_with_intervals(ds):
    fig = plot.class_bars(ds, ratio=0.6, **FAST)
    (ax,) = fig.axes
    assert len(ax.patches) == len(PRUNERS) * 3
    assert [t.get_text() for t in ax.get_xticklabels()] == ["class0", "class1", "class2"]
    assert legend_texts(fig) == ["L2-norm filter", "random filter"]
    assert "layer features.3 · Grad-CAM++" in ax.get_title()
    assert len(ax.containers) == 2 * len(PRUNERS)  # a BarContainer and an ErrorbarContainer per pruner
    assert ax.get_ylabel() == "PE-score at ratio 0.6"
    with pytest.raises(ValueError, match=r"ratios \[0.3, 0.6\]"):
        plot.class_bars(ds, ratio=0.5)


def test_heatmap_grid_images_by_models_over_the_input(ds):
    fig = plot.heatmap_grid(ds, images=3)
    panels = fig.axes[:-1]  # the last axes is the colour bar
    assert len(panels) == 3 * (1 + len(RATIOS))
    assert [ax.get_title() for ax in panels[:3]] == ["reference", "0.3", "0.6"]
    assert fig._suptitle.get_text() == "CAMs as the L2-norm filter pruning ratio grows\nlayer features.3 · Grad-CAM++"
    assert [panels[i * 3].get_ylabel() for i in range(3)] == ["class0\n#0", "class1\n#2", "class2\n#4"]
    pe = ds[schema.PE].sel(layer="features.3").isel(cam=0)
    assert panels[4].get_xlabel() == f"PE {float(pe.sel(model='l2@0.30', image=1)):.2f}"
    assert all(len(ax.get_images()) == 2 for ax in panels)
    np.testing.assert_allclose(panels[2].get_images()[1].get_array(),
                               ds[schema.HEATMAP].sel(model="l2@0.60", layer="features.3").isel(cam=0, image=0))
    assert fig.axes[-1].get_ylabel() == "CAM"


def test_heatmap_grid_named_images_other_pruner_and_no_input(ds):
    fig = plot.heatmap_grid(ds.drop_vars(schema.INPUT), pruner="random", images=[4, 5])
    panels = fig.axes[:-1]
    assert len(panels) == 2 * 3 and all(len(ax.get_images()) == 1 for ax in panels)
    assert panels[1].get_title() == "0.3" and "random filter" in fig._suptitle.get_text()
    with pytest.raises(KeyError, match="No pruner 'taylor'"):
        plot.heatmap_grid(ds, pruner="taylor")


def test_drop_scatter_places_each_model_at_its_two_drops(ds):
    fig = plot.drop_scatter(ds)
    (ax,) = fig.axes
    assert legend_texts(fig) == ["L2-norm filter", "random filter", "equal drop", "accuracy budget (2 points)"]
    assert "pruning ratio" in ax.get_title() and "layer features.3 · Grad-CAM++" in ax.get_title()
    assert ax.get_xlabel() == "Accuracy drop" and ax.get_ylabel() == "PE-score drop"
    pe = score(ds).sel(PICK)
    models = [f"random@{r:.2f}" for r in RATIOS]
    drawn = line(ax, "random filter")
    np.testing.assert_allclose(drawn.get_xdata(), ds[schema.ACCURACY][0] - ds[schema.ACCURACY].sel(model=models))
    np.testing.assert_allclose(drawn.get_ydata(), pe[0] - pe.sel(model=models))
    assert sorted(t.get_text() for t in ax.texts) == ["0.3", "0.3", "0.6", "0.6"]  # room for all four here


def test_decomposition_one_panel_per_pruner_with_the_three_terms_and_pe(ds):
    fig = plot.decomposition(ds)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["L2-norm filter", "random filter"]
    assert "layer features.3 · Grad-CAM++" in fig._suptitle.get_text()
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
    assert "Grad-CAM++" in ax.get_title() and ax.get_xlabel() == "Pruning ratio (random filter)"


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


def test_the_figures_take_cam_not_method(ds):
    with pytest.raises(TypeError, match="cam="):
        plot.drop_scatter(ds, method="gradcam++")
    fig = plot.drop_scatter(ds, cam="gradcam++")
    assert "Grad-CAM++" in fig.axes[0].get_title()


def test_every_full_name_comes_from_one_table():
    assert plot.PRUNER_NAMES["l2"] == "L2-norm filter" and plot.PRUNER_NAMES["senpis"] == "SeNPIS-Faster"
    assert plot.pruner_name("random") == "random filter" and plot.pruner_name("mine") == "mine"


@pytest.fixture(scope="module")
def with_controls():
    return results_dataset(n_images=12, size=16, pruners=PRUNERS, ratios=RATIOS,
                           controls={schema.CONTROL_FINETUNE: 0.05, schema.CONTROL_TWIN: 0.3})


def test_pe_vs_ratio_draws_the_trust_lines_chance_and_the_controls(with_controls):
    ds = with_controls
    fig = plot.pe_vs_ratio(ds, **FAST)
    score_ax, accuracy_ax = fig.axes
    pe = score(ds).sel(PICK)
    control = line(score_ax, "control PE (fine-tune only)")
    assert control.get_ydata()[0] == pytest.approx(float(pe.sel(model=schema.CONTROL_FINETUNE)))
    budget = line(accuracy_ax, "accuracy budget (−2 points)")
    assert budget.get_ydata()[0] == pytest.approx(float(ds.accuracy.sel(model="reference")) - 0.02)
    assert line(accuracy_ax, "chance (1/3)").get_ydata()[0] == pytest.approx(1 / 3)
    twin = line(score_ax, "control: twin (other seed)")
    assert twin.get_ydata()[0] == pytest.approx(float(pe.sel(model=schema.CONTROL_TWIN)))
    assert {"fine-tune", "twin"} <= {t.get_text() for t in score_ax.texts}
    ratios = line(score_ax, "random filter").get_xdata()
    np.testing.assert_allclose(ratios, [0.0, *RATIOS])  # the controls never enter a pruner's line
    without = plot.pe_vs_ratio(ds.drop_sel(model=[schema.CONTROL_FINETUNE, schema.CONTROL_TWIN]), **FAST)
    assert line(without.axes[0], "trust threshold 0.8").get_ydata()[0] == 0.8


def test_pe_vs_cost_places_each_model_at_its_share_of_the_references_macs(with_controls):
    ds = with_controls
    fig = plot.pe_vs_cost(ds)
    macs_ax, params_ax = fig.axes
    models = ["reference", "l2@0.30", "l2@0.60"]
    drawn = line(macs_ax, "L2-norm filter")
    np.testing.assert_allclose(drawn.get_xdata(), ds.macs.sel(model=models) / float(ds.macs.sel(model="reference")))
    np.testing.assert_allclose(drawn.get_ydata(), score(ds).sel(PICK).sel(model=models))
    assert macs_ax.get_xlabel().startswith("MACs") and params_ax.get_xlabel().startswith("parameters")
    assert "layer features.3 · Grad-CAM++" in macs_ax.get_title()


def test_drop_scatter_labels_never_overlap_each_other_or_a_marker():
    ds = results_dataset(n_images=12, size=16, pruners=PRUNERS, ratios=tuple(np.round(np.arange(0.1, 1.0, 0.1), 1)))
    fig = plot.drop_scatter(ds)
    (ax,) = fig.axes
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) >= 9  # at least half of the 18 points are labelled
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for other in boxes[i + 1:])
    radius = plot.STYLE["lines.markersize"] * fig.dpi / 72 * 0.8
    for drawn in ax.get_lines()[:2]:
        for x, y in ax.transData.transform(np.column_stack([drawn.get_xdata(), drawn.get_ydata()])):
            assert not any(b.x0 < x + radius and x - radius < b.x1 and b.y0 < y + radius and y - radius < b.y1
                           for b in boxes)


def test_heatmap_grid_overlays_the_map_on_a_grey_picture(ds):
    fig = plot.heatmap_grid(ds, images=1)
    picture = fig.axes[0].get_images()[0].get_array()
    assert picture.ndim == 3 and np.all(picture[..., 0] == picture[..., 1])  # grey: no object colour mixes in
    assert fig.axes[0].get_images()[1].get_cmap().name == plot.CAM_COLORMAP


def test_figures_are_readable_in_a_notebook(ds):
    """At least 600 px wide on screen, and no text under 9 px (a 1000 px notebook column)."""
    for fig in [plot.pe_vs_ratio(ds, **FAST), plot.drop_scatter(ds), plot.heatmap_grid(ds), plot.pe_vs_cost(ds)]:
        shown = fig.get_figwidth() * fig.dpi
        scale = min(1.0, 1000 / shown)  # a wider figure is shrunk to the column
        assert shown * scale >= 600
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_visible()]
        smallest = min(t.get_fontsize() for t in texts) * fig.dpi / 72 * scale
        assert smallest >= 9, smallest


SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def seeded():
    return seeded_results_dataset(seeds=SEEDS)


def scores_by_seed(ds, group: str, layer: str = "features.3") -> np.ndarray:
    """The class-weighted PE ``(seeds,)`` of ``group``'s models, from ``ds.pe`` and the support weights."""
    members = [group] if group in ds.model.values else [f"{group}/seed{seed}" for seed in SEEDS]
    labels = ds[schema.LABEL].values
    pe = ds[schema.PE].sel(model=members, layer=layer).isel(cam=0).values
    return sum((labels == k).mean() * pe[:, labels == k].mean(axis=1) for k in np.unique(labels))


def error_bar_ends(container, axis: str = "y") -> np.ndarray:
    """``(points, 2)``: the low and high end of each error bar of an ErrorbarContainer along ``axis``."""
    collections = container.lines[2]
    segments = (collections[-1] if axis == "y" else collections[0]).get_segments()
    return np.array([sorted(segment[:, 1 if axis == "y" else 0]) for segment in segments])


def seed_ranges(ax) -> list:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.get_label() == plot.SEED_RANGE]


def test_pe_vs_ratio_draws_the_mean_over_seeds_and_error_bars_from_the_lowest_to_the_highest_seed(seeded):
    fig = plot.pe_vs_ratio(seeded, **FAST)
    score_ax, accuracy_ax = fig.axes
    assert "mean of 3 seeds" in score_ax.get_title()
    assert plot.SEED_RANGE in legend_texts(fig)
    for pruner, bars in zip(PRUNERS, seed_ranges(score_ax)):
        groups = ["reference"] + [f"{pruner}@{r:.2f}" for r in RATIOS]
        per_seed = [scores_by_seed(seeded, group) for group in groups]
        np.testing.assert_allclose(line(score_ax, plot.pruner_name(pruner)).get_ydata(), [s.mean() for s in per_seed])
        np.testing.assert_allclose(error_bar_ends(bars), [(s.min(), s.max()) for s in per_seed])
        assert np.all(np.diff(error_bar_ends(bars)[1:], axis=1) > 0)  # the seeds differ: real bars, not points
    accuracy = seeded[schema.ACCURACY]
    l2 = [accuracy.sel(model=[f"l2@{r:.2f}/seed{s}" for s in SEEDS]).values for r in RATIOS]
    np.testing.assert_allclose(error_bar_ends(seed_ranges(accuracy_ax)[0])[1:], [(a.min(), a.max()) for a in l2])
    np.testing.assert_allclose(line(accuracy_ax, "L2-norm filter").get_ydata()[1:], [a.mean() for a in l2])
    finetune = scores_by_seed(seeded, schema.CONTROL_FINETUNE)
    assert line(score_ax, "control PE (fine-tune only)").get_ydata()[0] == pytest.approx(finetune.mean())


def test_a_seed_draws_what_that_seed_alone_gives(seeded):
    fig = plot.pe_vs_ratio(seeded, seed=1, **FAST)
    score_ax = fig.axes[0]
    assert "fine-tuning seed 1" in score_ax.get_title() and not seed_ranges(score_ax)
    expected = [scores_by_seed(seeded, "reference")[0]] + [scores_by_seed(seeded, f"random@{r:.2f}")[1] for r in RATIOS]
    np.testing.assert_allclose(line(score_ax, "random filter").get_ydata(), expected)
    cost = plot.pe_vs_cost(seeded, seed=2)
    np.testing.assert_allclose(line(cost.axes[0], "L2-norm filter").get_ydata()[1:],
                               [scores_by_seed(seeded, f"l2@{r:.2f}")[2] for r in RATIOS])
    titles = {name: text for name, text in [
        ("class_bars", plot.class_bars(seeded, 0.3, seed=2, **FAST).axes[0].get_title()),
        ("drop_scatter", plot.drop_scatter(seeded, seed=2).axes[0].get_title()),
        ("decomposition", plot.decomposition(seeded, seed=2)._suptitle.get_text()),
        ("layer_ratio_map", plot.layer_ratio_map(seeded, seed=2).axes[0].get_title()),
        ("heatmap_grid", plot.heatmap_grid(seeded, seed=2, images=1)._suptitle.get_text())]}
    assert all("fine-tuning seed 2" in title for title in titles.values()), titles
    with pytest.raises(ValueError, match=r"No group of models has seed 7; the seeds are \[0, 1, 2\]"):
        plot.drop_scatter(seeded, seed=7)


def test_the_other_figures_draw_each_groups_mean_and_seed_range(seeded):
    labels = seeded[schema.LABEL].values
    members = [f"random@0.30/seed{s}" for s in SEEDS]
    per_class = np.stack([seeded[schema.PE].sel(model=members, layer="features.3").isel(cam=0).values[:, labels == k]
                          .mean(axis=1) for k in np.unique(labels)], axis=1)  # (seeds, classes)
    bars = plot.class_bars(seeded, 0.3, **FAST)
    ax = bars.axes[0]
    random = [patch.get_height() for patch in ax.patches[3:]]
    np.testing.assert_allclose(random, per_class.mean(axis=0))
    whiskers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)][-1]  # the random filter's
    np.testing.assert_allclose(error_bar_ends(whiskers), np.column_stack([per_class.min(0), per_class.max(0)]))
    assert "whiskers: lowest to highest seed" in ax.get_title()
    scatter = plot.drop_scatter(seeded).axes[0]
    reference = scores_by_seed(seeded, "reference")[0]
    l2 = seed_ranges(scatter)[0]
    pe_drops = [reference - scores_by_seed(seeded, f"l2@{r:.2f}") for r in RATIOS]
    np.testing.assert_allclose(error_bar_ends(l2, "y"), [(d.min(), d.max()) for d in pe_drops])
    accuracy = seeded[schema.ACCURACY]
    drops = [float(accuracy.sel(model="reference")) - accuracy.sel(model=[f"l2@{r:.2f}/seed{s}" for s in SEEDS]).values
             for r in RATIOS]
    np.testing.assert_allclose(error_bar_ends(l2, "x"), [(d.min(), d.max()) for d in drops])


def test_heatmap_grid_shows_the_smallest_seeds_maps_and_names_the_seed(seeded):
    ds = seeded.copy(deep=True)
    for seed in SEEDS:  # every seed its own maps
        ds[schema.HEATMAP].loc[{"model": f"l2@0.60/seed{seed}"}] = seed / 10
    fig = plot.heatmap_grid(ds, images=1)
    assert fig._suptitle.get_text().endswith("layer features.3 · Grad-CAM++ · fine-tuning seed 0")
    assert np.all(fig.axes[2].get_images()[1].get_array() == np.float32(0.0))
    pe = ds[schema.PE].sel(model="l2@0.60/seed0", layer="features.3").isel(cam=0, image=0)
    assert fig.axes[2].get_xlabel() == f"PE {float(pe):.2f}"
    picked = plot.heatmap_grid(ds, images=1, seed=2)
    assert np.all(picked.axes[2].get_images()[1].get_array() == np.float32(0.2))


def test_drop_scatter_keeps_a_randomised_copy_from_crowding_the_candidates():
    name = schema.RANDOMISED_PREFIX + "features.3"
    ds = results_dataset(n_images=60, pruners=PRUNERS, ratios=RATIOS,
                         controls={schema.CONTROL_FINETUNE: 0.05, schema.CONTROL_TWIN: 0.3, name: 3.0})
    ax = plot.drop_scatter(ds).axes[0]
    accuracy_drop = float(ds.accuracy.sel(model="reference") - ds.accuracy.sel(model=name))
    candidates = np.concatenate([line(ax, plot.pruner_name(p)).get_xdata() for p in PRUNERS])
    low, high = ax.get_xlim()
    assert high < accuracy_drop and low <= candidates.min() and candidates.max() <= high
    assert high <= candidates.max() + 0.1 * (high - low)  # the axis ends just past the furthest candidate
    edge = line(ax, "randomised at features.3 (off scale, at the edge)")
    assert edge.get_xdata()[0] == pytest.approx(high) and edge.get_marker() == ">"
    pe = score(ds).sel(PICK)
    (label,) = [t.get_text() for t in ax.texts if t.get_text().startswith("randomised copy")]
    assert label == f"randomised copy → (PE-score {float(pe.sel(model=name)):.2f})"


DEMO_PRUNERS, DEMO_RATIOS = ("l2", "senpis", "taylor", "random"), (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)


def label_boxes(fig, ax) -> list:
    """The window extents of the labels in ``ax``, as the renderer draws them."""
    fig.canvas.draw()
    return [text.get_window_extent() for text in ax.texts]


def assert_apart_and_inside(fig, ax) -> list:
    """No two labels of ``ax`` intersect and every one lies inside the axes; returns their boxes."""
    boxes, frame = label_boxes(fig, ax), ax.get_window_extent()
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for other in boxes[i + 1:]), ax.texts[i].get_text()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
            ax.texts[i].get_text()
    return boxes


def test_a_crowded_drop_scatter_fits_the_candidates_and_keeps_its_labels_apart_inside_the_axes():
    """The demo's shape: four pruners at six ratios, the two controls and a randomised copy far out."""
    name = schema.RANDOMISED_PREFIX + "features.3"
    ds = results_dataset(n_images=60, pruners=DEMO_PRUNERS, ratios=DEMO_RATIOS,
                         controls={schema.CONTROL_FINETUNE: 0.02, schema.CONTROL_TWIN: 0.3, name: 3.0})
    fig = plot.drop_scatter(ds)
    (ax,) = fig.axes
    boxes = assert_apart_and_inside(fig, ax)
    texts = [t.get_text() for t in ax.texts]
    assert any(text.startswith("randomised copy →") for text in texts)  # the edge marker says what it is
    assert len(boxes) >= 1 + len(DEMO_PRUNERS) * len(DEMO_RATIOS) // 2  # most ratios are labelled
    x = np.concatenate([line(ax, plot.pruner_name(p)).get_xdata() for p in DEMO_PRUNERS])
    y = np.concatenate([line(ax, plot.pruner_name(p)).get_ydata() for p in DEMO_PRUNERS])
    (low, high), (bottom, top) = ax.get_xlim(), ax.get_ylim()
    assert low <= x.min() and x.max() <= high and bottom <= y.min() and y.max() <= top
    assert high - low <= 1.5 * (max(x.max(), 0.02) - min(x.min(), 0.0))  # the axes fit the candidates ...
    assert float(ds.accuracy.sel(model="reference") - ds.accuracy.sel(model=name)) > high  # ... not the copy


def test_a_control_far_above_the_candidates_is_drawn_at_the_top_edge_pointing_up():
    ds = results_dataset(n_images=30, pruners=PRUNERS, ratios=(0.05, 0.1), controls={schema.CONTROL_TWIN: 0.9})
    ds = ds.assign_coords(accuracy=ds.accuracy.where(ds.model != schema.CONTROL_TWIN, ds.accuracy.sel(model="reference")))
    fig = plot.drop_scatter(ds)
    (ax,) = fig.axes
    edge = line(ax, "control: twin (other seed) (off scale, at the edge)")
    assert edge.get_marker() == "^" and edge.get_ydata()[0] == pytest.approx(ax.get_ylim()[1])
    pe = score(ds).sel(PICK)
    assert float(pe.sel(model="reference") - pe.sel(model=schema.CONTROL_TWIN)) > ax.get_ylim()[1]
    assert any(t.get_text().startswith("control: twin (other seed) ↑") for t in ax.texts)
    assert_apart_and_inside(fig, ax)


def test_pe_vs_ratio_draws_a_randomised_copy_far_below_at_the_edge_not_stretching_the_axes():
    name = schema.RANDOMISED_PREFIX + "features.3"
    ds = results_dataset(n_images=60, pruners=DEMO_PRUNERS, ratios=(0.05, 0.1, 0.2),
                         controls={schema.CONTROL_FINETUNE: 0.02, schema.CONTROL_TWIN: 0.3, name: 3.0})
    fig = plot.pe_vs_ratio(ds, **FAST)
    score_ax, accuracy_ax = fig.axes
    pe = score(ds).sel(PICK)
    bottom, top = score_ax.get_ylim()
    drawn = np.concatenate([line(score_ax, plot.pruner_name(p)).get_ydata() for p in DEMO_PRUNERS]
                           + [band.get_paths()[0].vertices[:, 1] for band in score_ax.collections
                              if isinstance(band, PolyCollection)])
    assert float(pe.sel(model=name)) < bottom <= drawn.min() and drawn.max() <= top
    assert drawn.min() - bottom <= 0.1 * (top - bottom)  # the axis ends just below the lowest band
    edge = line(score_ax, "randomised at features.3 (off scale, at the edge)")
    assert edge.get_marker() == "v" and edge.get_ydata()[0] == pytest.approx(bottom)
    assert edge.get_xdata()[0] == 0.0  # still at its ratio
    assert f"randomised copy ↓ (PE-score {float(pe.sel(model=name)):.2f})" in [t.get_text() for t in score_ax.texts]
    twin = float(pe.sel(model=schema.CONTROL_TWIN))
    assert line(score_ax, "control: twin (other seed)").get_ydata()[0] == pytest.approx(twin)  # near: in place
    assert_apart_and_inside(fig, score_ax)
    chance = line(accuracy_ax, "chance (1/3)").get_ydata()[0]
    assert accuracy_ax.get_ylim()[0] <= chance  # chance is a reference line: the accuracy axis keeps it


@pytest.fixture(scope="module")
def user_models():
    return user_models_dataset(n_images=30, size=16, controls={schema.CONTROL_FINETUNE: 0.05})


USER_MODELS = ["mine-small", "mine-medium", "mine-large"]


def test_pe_vs_accuracy_places_each_user_model_at_its_accuracy_and_pe(user_models):
    ds = user_models
    fig = plot.pe_vs_accuracy(ds)
    (ax,) = fig.axes
    pe = score(ds).sel(PICK)
    for model in USER_MODELS:
        drawn = line(ax, model)
        assert (drawn.get_xdata()[0], drawn.get_ydata()[0]) == pytest.approx(
            (float(ds.accuracy.sel(model=model)), float(pe.sel(model=model))))
    assert line(ax, "accuracy budget (−2 points)").get_xdata()[0] == pytest.approx(
        float(ds.accuracy.sel(model="reference")) - 0.02)
    assert line(ax, "control PE (fine-tune only)").get_ydata()[0] == pytest.approx(
        float(pe.sel(model=schema.CONTROL_FINETUNE)))
    assert sorted(t.get_text() for t in ax.texts) == sorted(USER_MODELS)  # room for every name here
    assert_apart_and_inside(fig, ax)
    assert "PE-score against accuracy" in ax.get_title() and "layer features.3 · Grad-CAM++" in ax.get_title()


def test_pe_vs_accuracy_of_pruned_models_labels_the_ratios_apart(ds):
    fig = plot.pe_vs_accuracy(ds)
    (ax,) = fig.axes
    assert sorted(t.get_text() for t in ax.texts) == ["0.3", "0.3", "0.6", "0.6"]
    assert legend_texts(fig)[:3] == ["L2-norm filter", "random filter", schema.REFERENCE]
    assert_apart_and_inside(fig, ax)


def test_class_bars_of_user_models_one_bar_per_candidate_and_class(user_models):
    ds = user_models
    fig = plot.class_bars(ds, n_resamples=50)
    (ax,) = fig.axes
    labels = ds.label.values
    pe = ds.pe.sel(PICK)
    expected = [pe.sel(model=model).values[labels == k].mean() for model in USER_MODELS for k in range(3)]
    np.testing.assert_allclose([patch.get_height() for patch in ax.patches], expected, rtol=1e-6)
    assert legend_texts(fig) == USER_MODELS and ax.get_ylabel() == "PE-score"
    two = plot.class_bars(ds, models=USER_MODELS[1:], n_resamples=50)
    assert len(two.axes[0].patches) == 2 * 3
    with pytest.raises(ValueError, match="the candidates are"):
        plot.class_bars(ds, models=["theirs"])
    with pytest.raises(ValueError, match="not both"):
        plot.class_bars(ds, ratio=0.3, models=USER_MODELS)


def test_side_by_side_shows_the_reference_the_candidate_and_their_difference(user_models):
    ds = user_models
    fig = plot.side_by_side(ds, "mine-large", images=2)
    panels, colour_bars = fig.axes[:6], fig.axes[6:]
    assert [ax.get_title() for ax in panels[:3]] == ["reference", "candidate", "candidate − reference"]
    maps = ds.heatmap.sel(PICK)
    np.testing.assert_allclose(panels[1].get_images()[1].get_array(), maps.sel(model="mine-large", image=0))
    difference = maps.sel(model="mine-large", image=1) - maps.sel(model="reference", image=1)
    np.testing.assert_allclose(panels[5].get_images()[0].get_array(), difference, atol=1e-6)
    limit = panels[5].get_images()[0].get_clim()[1]
    assert limit == plot.difference_limit(maps.sel(model="mine-large").values - maps.sel(model="reference").values)
    assert panels[4].get_xlabel() == f"PE {float(ds.pe.sel(PICK).sel(model='mine-large', image=1)):.2f}"
    assert "mine-large" in fig._suptitle.get_text() and [ax.get_xlabel() for ax in colour_bars] == ["CAM", "difference"]
    assert panels[0].get_ylabel() == "class0\n#0"
    with pytest.raises(KeyError, match="the candidates are"):
        plot.side_by_side(ds, "theirs")
