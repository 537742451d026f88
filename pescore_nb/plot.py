"""Publication figures of a pescore_nb Dataset, one function per figure.

Every function reads only the Dataset, returns a :class:`matplotlib.figure.Figure` (made without
pyplot, so nothing is left open in a pyplot figure manager) and, given ``path``, saves it as PNG,
PDF or SVG by the path's suffix (:func:`save`). All share one style: the colour-blind-safe
Okabe-Ito palette, each pruning method with its own colour *and* marker, 8 pt text, a single
journal column width (3.5 in). When the Dataset holds several layers or CAM methods, ``layer``
and ``method`` pick one (default: the first).
"""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib as mpl
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from . import schema, stats
from .scores import score

COLUMN_WIDTH = 3.5  # inches: one column of a two-column journal page
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7"}
PRUNER_COLOURS = [OKABE_ITO[name] for name in
                  ("orange", "blue", "bluish green", "vermillion", "reddish purple", "sky blue", "yellow")]
PRUNER_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
REFERENCE_STYLE = {"color": OKABE_ITO["black"], "marker": "*", "markersize": 8, "linestyle": "none"}
HEATMAP_CMAP = "viridis"  # perceptually uniform and colour-blind safe, unlike the usual "jet"
LABELS = {schema.PE: "PE-score", schema.SP2PS: "Sp2PS", schema.SSIM: "SSIM", schema.IOU: "IoU",
          schema.CONF: "Conf", schema.ACCURACY: "Accuracy"}
SAVE_FORMATS = (".png", ".pdf", ".svg")
STYLE = {
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.frameon": False, "lines.linewidth": 1.2, "lines.markersize": 4,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.linewidth": 0.4,
    "grid.alpha": 0.4, "axes.prop_cycle": mpl.cycler(color=PRUNER_COLOURS),
    "savefig.dpi": 300, "savefig.bbox": "tight", "pdf.fonttype": 42, "svg.fonttype": "none",
}


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (PNG, PDF or SVG, by suffix), creating its folder; returns the path."""
    path = Path(path)
    if path.suffix.lower() not in SAVE_FORMATS:
        raise ValueError(f"Cannot save a figure as {path.name!r}: the suffix must be one of {SAVE_FORMATS}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with mpl.rc_context(STYLE):
        fig.savefig(path)
    return path


def _styled(plot):
    """Draw ``plot``'s figure in :data:`STYLE` and save it when the call passes ``path``."""
    @functools.wraps(plot)
    def wrapper(*args, path: str | Path | None = None, **kwargs) -> Figure:
        with mpl.rc_context(STYLE):
            fig = plot(*args, **kwargs)
        if path is not None:
            save(fig, path)
        return fig
    return wrapper


@_styled
def pe_vs_ratio(ds: xr.Dataset, variable: str = schema.PE, layer: str | None = None, method: str | None = None,
                level: float = 0.95, n_resamples: int = 1000, seed: int = 0) -> Figure:
    """The paper's core figure: score (top) and accuracy (bottom) vs pruning ratio, a line per pruner.

    Bands are stratified bootstrap intervals (:func:`stats.bootstrap`); the accuracy and its band
    come from the per-image ``pred == label`` when ``pred`` is stored, else the ``accuracy``
    coordinate is drawn without a band. The reference (unpruned) model is the star at ratio 0.
    """
    ds = _select(ds, layer, method)
    fig = Figure(figsize=(COLUMN_WIDTH, 3.6), layout="constrained")
    score_ax, accuracy_ax = fig.subplots(2, 1, sharex=True)
    intervals = stats.bootstrap(ds, variable, n_resamples=n_resamples, level=level, seed=seed)
    _lines_with_bands(score_ax, ds, intervals, with_legend=True)
    if schema.PRED in ds:
        correct = (ds[schema.PRED] == ds[schema.LABEL]).astype(np.float64)
        accuracy = stats.bootstrap(ds.assign(correct=correct), "correct", n_resamples=n_resamples,
                                   level=level, seed=seed, how="support")
    else:
        accuracy = xr.Dataset({"estimate": ds[schema.ACCURACY]})
    _lines_with_bands(accuracy_ax, ds, accuracy, with_legend=False)
    score_ax.set_ylabel(LABELS.get(variable, variable))
    accuracy_ax.set_ylabel(LABELS[schema.ACCURACY])
    accuracy_ax.set_xlabel("Pruning ratio")
    return fig


def _lines_with_bands(ax, ds: xr.Dataset, interval: xr.Dataset, with_legend: bool) -> None:
    """One line (and band, when ``interval`` has ``low``/``high``) per pruner, from the reference at 0."""
    for pruner, style in _pruner_styles(ds).items():
        models = _models_of(ds, pruner, with_reference=True)
        ratios = ds[schema.RATIO].sel(model=models).values
        ax.plot(ratios, interval["estimate"].sel(model=models).values, label=pruner, **style)
        if "low" in interval:
            ax.fill_between(ratios, interval["low"].sel(model=models).values,
                            interval["high"].sel(model=models).values, color=style["color"], alpha=0.2,
                            linewidth=0)
    reference = ds[schema.MODEL].values[0]
    ax.plot([float(ds[schema.RATIO].sel(model=reference))], [float(interval["estimate"].sel(model=reference))],
            label=schema.REFERENCE, **REFERENCE_STYLE)
    if with_legend:
        ax.legend(loc="lower left")


@_styled
def class_bars(ds: xr.Dataset, ratio: float, variable: str = schema.PE, layer: str | None = None,
               method: str | None = None, level: float = 0.95, n_resamples: int = 1000, seed: int = 0) -> Figure:
    """Per-class score of each pruner's model at ``ratio``: bars with bootstrap intervals."""
    ds = _select(ds, layer, method)
    models = ds[schema.MODEL].values[np.isclose(ds[schema.RATIO].values, ratio)
                                     & (ds[schema.PRUNER].values != schema.UNPRUNED)]
    if len(models) == 0:
        ratios = sorted({float(r) for r in ds[schema.RATIO].values if r > 0})
        raise ValueError(f"No pruned model at ratio {ratio}; the Dataset has ratios {ratios}.")
    intervals = stats.bootstrap(ds.sel(model=models), variable, per_class=True, n_resamples=n_resamples,
                                level=level, seed=seed)
    styles = _pruner_styles(ds)
    classes = intervals[schema.CLASS_NAME].values
    width = 0.8 / len(models)
    fig = Figure(figsize=(COLUMN_WIDTH, 2.4), layout="constrained")
    ax = fig.subplots()
    for position, model in enumerate(models):
        interval = intervals.sel(model=model)
        estimate = interval["estimate"].values
        error = [estimate - interval["low"].values, interval["high"].values - estimate]
        pruner = str(ds[schema.PRUNER].sel(model=model).values)
        ax.bar(np.arange(len(classes)) + (position - (len(models) - 1) / 2) * width, estimate, width,
               yerr=error, color=styles[pruner]["color"], label=pruner, error_kw={"linewidth": 0.8})
    slanted = len(classes) > 4  # long rows of class names would overlap
    ax.set_xticks(np.arange(len(classes)), classes, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_ylabel(f"{LABELS.get(variable, variable)} at ratio {ratio:g}")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper right", ncols=len(models))
    return fig


@_styled
def heatmap_grid(ds: xr.Dataset, pruner: str | None = None, images: int | list = 4, layer: str | None = None,
                 method: str | None = None, alpha: float = 0.5) -> Figure:
    """CAMs of ``images`` (rows; an int takes the first ones, a list names ``image`` values) for the
    reference and each ratio of ``pruner`` (columns; default the first), over the ``input`` picture."""
    ds = _select(ds, layer, method)
    pruner = pruner or next(iter(_pruner_styles(ds)))
    models = _models_of(ds, pruner, with_reference=True)
    ds = ds.isel(image=slice(images)) if isinstance(images, int) else ds.sel(image=list(images))
    width = COLUMN_WIDTH if len(models) <= 5 else 2 * COLUMN_WIDTH  # many ratios: a full-width figure
    fig = Figure(figsize=(width, width * ds.sizes[schema.IMAGE] / (len(models) + 0.3)), layout="constrained")
    fig.suptitle(f"CAMs as the {pruner} pruning ratio grows", fontsize=mpl.rcParams["axes.titlesize"])
    axes = fig.subplots(ds.sizes[schema.IMAGE], len(models), squeeze=False)
    extent = (0, 1, 1, 0)  # input and heatmap share the axes whatever their resolutions
    for row, image in enumerate(ds[schema.IMAGE].values):
        for col, model in enumerate(models):
            ax = axes[row, col]
            if schema.INPUT in ds:
                picture = ds[schema.INPUT].sel(image=image).transpose(schema.Y, schema.X, schema.CHANNEL).values
                ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", extent=extent)
            heatmap = ds[schema.HEATMAP].sel(model=model, image=image).values.astype(np.float32)
            ax.imshow(heatmap, cmap=HEATMAP_CMAP, vmin=0, vmax=1, extent=extent,
                                 alpha=alpha if schema.INPUT in ds else 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.spines[:].set_visible(False)
            if row == 0:
                ratio = float(ds[schema.RATIO].sel(model=model))
                ax.set_title("reference" if col == 0 else f"{ratio:g}", fontsize="small")
            if col == 0:
                ax.set_ylabel(_class_name(ds, image), fontsize="small")
    colours = mpl.cm.ScalarMappable(mpl.colors.Normalize(0, 1), HEATMAP_CMAP)  # opaque, unlike the overlay
    fig.colorbar(colours, ax=axes, shrink=0.6, label="CAM")
    return fig


@_styled
def drop_scatter(ds: xr.Dataset, variable: str = schema.PE, layer: str | None = None,
                 method: str | None = None) -> Figure:
    """Score drop vs accuracy drop of every pruned model, from the reference; a line per pruner.

    Points far above the diagonal are models whose accuracy hides a drift of attention; the
    dotted line marks the 2 % accuracy drop that pruning papers usually accept.
    """
    ds = _select(ds, layer, method)
    scores = score(ds, variable)
    reference = ds[schema.MODEL].values[0]
    score_drop = float(scores.sel(model=reference)) - scores
    accuracy_drop = float(ds[schema.ACCURACY].sel(model=reference)) - ds[schema.ACCURACY]
    fig = Figure(figsize=(COLUMN_WIDTH, 2.8), layout="constrained")
    ax = fig.subplots()
    for pruner, style in _pruner_styles(ds).items():
        models = _models_of(ds, pruner, with_reference=False)
        x, y = accuracy_drop.sel(model=models).values, score_drop.sel(model=models).values
        ax.plot(x, y, label=pruner, **style)
        for model, x_i, y_i in zip(models, x, y):
            ax.annotate(f"{float(ds[schema.RATIO].sel(model=model)):g}", (x_i, y_i), xytext=(3, 3),
                        textcoords="offset points", fontsize=6, color=style["color"])
    ax.axline((0, 0), slope=1, color="0.6", linestyle="--", linewidth=0.8, label="equal drop")
    ax.axvline(0.02, color="0.3", linestyle=":", linewidth=0.8, label="2 % accuracy drop")
    ax.set_xlabel(f"{LABELS[schema.ACCURACY]} drop")
    ax.set_ylabel(f"{LABELS.get(variable, variable)} drop")
    fig.legend(loc="outside lower center", ncols=3)
    return fig


@_styled
def decomposition(ds: xr.Dataset, layer: str | None = None, method: str | None = None) -> Figure:
    """SSIM, IoU and Conf (class-weighted) beside PE vs ratio: one panel per pruner."""
    ds = _select(ds, layer, method)
    terms = {schema.SSIM: (OKABE_ITO["sky blue"], "o", "-"), schema.IOU: (OKABE_ITO["vermillion"], "s", "--"),
             schema.CONF: (OKABE_ITO["bluish green"], "^", "-."), schema.PE: (OKABE_ITO["black"], "", "-")}
    scores = {term: score(ds, term) for term in terms}
    pruners = list(_pruner_styles(ds))
    fig = Figure(figsize=(COLUMN_WIDTH, 0.4 + 1.5 * len(pruners)), layout="constrained")
    axes = fig.subplots(len(pruners), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, pruner in zip(axes, pruners):
        models = _models_of(ds, pruner, with_reference=True)
        ratios = ds[schema.RATIO].sel(model=models).values
        for term, (colour, marker, linestyle) in terms.items():
            ax.plot(ratios, scores[term].sel(model=models).values, color=colour, marker=marker,
                    linestyle=linestyle, linewidth=2.0 if term == schema.PE else 1.2, label=LABELS[term])
        ax.set_title(pruner, loc="left")
        ax.set_ylabel("Score")
        ax.set_ylim(0, 1.05)
    axes[0].legend(loc="lower left", ncols=4)
    axes[-1].set_xlabel("Pruning ratio")
    return fig


@_styled
def layer_ratio_map(ds: xr.Dataset, variable: str = schema.PE, pruner: str | None = None,
                    method: str | None = None) -> Figure:
    """Score of every layer (rows) at every ratio of ``pruner`` (columns, the reference first)."""
    ds = _select(ds, None, method, keep_layers=True)
    pruner = pruner or next(iter(_pruner_styles(ds)))
    models = _models_of(ds, pruner, with_reference=True)
    table = score(ds, variable).sel(model=models).transpose(schema.LAYER, schema.MODEL).values
    fig = Figure(figsize=(COLUMN_WIDTH, 0.9 + 0.35 * table.shape[0]), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(table, cmap=HEATMAP_CMAP, vmin=0, vmax=1, aspect="auto")
    for (row, col), value in np.ndenumerate(table):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                color="black" if value > 0.6 else "white")
    ratios = ds[schema.RATIO].sel(model=models).values
    ax.set_xticks(range(len(models)), ["ref"] + [f"{r:g}" for r in ratios[1:]])
    ax.set_yticks(range(table.shape[0]), ds[schema.LAYER].values)
    ax.set_xlabel(f"Pruning ratio ({pruner})")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label=LABELS.get(variable, variable))
    return fig


def _select(ds: xr.Dataset, layer: str | None, method: str | None, keep_layers: bool = False) -> xr.Dataset:
    """``ds`` at one layer (unless ``keep_layers``) and one CAM method, the first ones by default."""
    choices = {schema.CAM: method} if keep_layers else {schema.LAYER: layer, schema.CAM: method}
    for dim, name in choices.items():
        available = ds[dim].values.tolist()
        if name is not None and name not in available:
            raise KeyError(f"No {dim} {name!r} in the Dataset; pass one of {available}.")
        ds = ds.sel({dim: available[0] if name is None else name})
    return ds


def _pruner_styles(ds: xr.Dataset) -> dict[str, dict]:
    """Colour and marker of each pruner, in the order of the ``pruner`` coordinate."""
    pruners = [p for p in dict.fromkeys(ds[schema.PRUNER].values.tolist()) if p != schema.UNPRUNED]
    if not pruners:
        raise ValueError("The Dataset has no pruned model (every 'pruner' is "
                         f"{schema.UNPRUNED!r}); evaluate some candidates first.")
    return {p: {"color": PRUNER_COLOURS[i % len(PRUNER_COLOURS)], "marker": PRUNER_MARKERS[i % len(PRUNER_MARKERS)]}
            for i, p in enumerate(pruners)}


def _models_of(ds: xr.Dataset, pruner: str, with_reference: bool) -> list:
    """Names of ``pruner``'s models by increasing ratio, after the reference when ``with_reference``."""
    mask = ds[schema.PRUNER].values == pruner
    if not mask.any():
        raise KeyError(f"No pruner {pruner!r} in the Dataset; it has {list(_pruner_styles(ds))}.")
    names, ratios = ds[schema.MODEL].values[mask], ds[schema.RATIO].values[mask]
    ordered = names[np.argsort(ratios, kind="stable")].tolist()
    return [ds[schema.MODEL].values[0]] + ordered if with_reference else ordered


def _class_name(ds: xr.Dataset, image) -> str:
    names = ds[schema.CLASS_NAME] if schema.CLASS_NAME in ds.coords else ds[schema.LABEL]
    return str(names.sel(image=image).values)
