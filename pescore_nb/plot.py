"""Publication figures of a pescore_nb Dataset, one function per figure, and the colour conventions
every view shares (the explorer and the HTML report read them from here).

Every function reads only the Dataset, returns a :class:`matplotlib.figure.Figure` (made without
pyplot, so nothing is left open in a pyplot figure manager) and, given ``path``, saves it as PNG,
PDF or SVG by the path's suffix (:func:`save`). All share one style: the colour-blind-safe
Okabe-Ito palette, each pruning method with its own colour *and* marker and its full name
(:data:`PRUNER_NAMES`), 8 pt text, a single journal column width (3.5 in), saved at 300 dpi and
shown in a notebook at :data:`SCREEN_DPI` (a column is 630 px wide there, its smallest text 17 px).
When the Dataset holds several layers or CAM methods, ``layer`` and ``cam`` pick one (default:
the first); every figure names the layer and CAM method it shows in its title.

Models made with several fine-tuning seeds are drawn by group (:mod:`pescore_nb.grouping`): every
function that reads models takes ``seed``; ``None`` (the default) draws each group's mean over its
seeds, with error bars from the lowest to the highest seed where the figure has room for them
(:func:`pe_vs_ratio`, :func:`pe_vs_cost`, :func:`drop_scatter`, :func:`class_bars`,
:func:`pe_vs_accuracy`); an int draws what that seed alone gives. :func:`heatmap_grid` and
:func:`side_by_side` show one seed's maps (default: the smallest) and say which. Titles say which
seeds a figure shows.

Candidates without pruning ratios (a user's own models) have three figures of their own, which
also draw candidates with ratios: :func:`side_by_side` (one candidate's maps beside the
reference's, and their difference), :func:`pe_vs_accuracy` and :func:`class_bars` with
``models=`` (or neither ``ratio`` nor ``models``: every candidate).

Colours: CAMs use :data:`CAM_COLORMAP` (viridis: perceptually uniform, colour-blind safe), drawn
over a *grey* copy of the picture (:func:`grey_picture`), so an object's own colours never mix
with the map's; differences of maps use the diverging :data:`DIFFERENCE_COLORMAP` over a
symmetric range (:func:`difference_limit`) wide enough to show them, never a faint ±1.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import xarray as xr
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import grouping, schema, stats, structure
from .scores import by_class, score

COLUMN_WIDTH = 3.5  # inches: one column of a two-column journal page
SCREEN_DPI = 180    # a figure's dpi on screen (notebooks show it at fig.dpi): 3.5 in = 630 px
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7"}
PRUNER_COLOURS = [OKABE_ITO[name] for name in
                  ("orange", "blue", "bluish green", "vermillion", "reddish purple", "sky blue", "yellow")]
PRUNER_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
REFERENCE_STYLE: dict[str, Any] = {"color": OKABE_ITO["black"], "marker": "*", "markersize": 8, "linestyle": "none"}
CONTROL_STYLES: dict[str, dict[str, Any]] = {schema.CONTROL_FINETUNE: {"color": "0.35", "marker": "P", "markersize": 6, "linestyle": "none"},
                  schema.CONTROL_TWIN: {"color": "0.35", "marker": "X", "markersize": 6, "linestyle": "none"}}
SPREAD_STYLE = {"fmt": "none", "elinewidth": 0.8, "capsize": 2}  # error bars from the lowest to the highest seed
SEED_RANGE = "lowest to highest seed"  # what legends and titles call those error bars
OFF_SCALE_MARKERS = {(1, 0): ">", (-1, 0): "<", (0, 1): "^", (0, -1): "v"}  # a point beyond an axis, at its edge
# The one table of full names: what legends, titles, the explorer and the report print.
PRUNER_NAMES = {"l1": "L1-norm filter", "l2": "L2-norm filter", "random": "random filter",
                "senpis": "SeNPIS-Faster", "taylor": "Taylor (first order)", "unstructured": "unstructured magnitude",
                schema.UNPRUNED: "unpruned"}
CONTROL_NAMES = {schema.CONTROL_FINETUNE: "control: fine-tune only", schema.CONTROL_TWIN: "control: twin (other seed)"}
CAM_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM", "xgradcam": "XGrad-CAM",
             "hirescam": "HiResCAM", "scorecam": "Score-CAM", "eigencam": "EigenCAM", "ablationcam": "AblationCAM",
             "fullgrad": "FullGrad"}
CAM_COLORMAP = "viridis"         # every CAM, in figures, the explorer and the report
DIFFERENCE_COLORMAP = "RdBu_r"   # candidate - reference: red where the candidate looks more
DIFFERENCE_LIMITS = (0.1, 0.2, 0.5, 1.0)  # the symmetric ranges a difference is drawn over
OVERLAY_ALPHA = 0.6              # the map's weight over the grey picture
HEATMAP_CMAP = CAM_COLORMAP      # the name of earlier versions
LABELS = {schema.PE: "PE-score", schema.SP2PS: "Sp2PS", schema.SSIM: "SSIM", schema.IOU: "IoU",
          schema.CONF: "Conf", schema.ACCURACY: "Accuracy"}
COSTS = {schema.MACS: "MACs", schema.PARAMS: "parameters"}
SAVE_FORMATS = (".png", ".pdf", ".svg")
STYLE: dict = {  # matplotlib's rc parameters (a plain dict: rc_context takes it as it is)
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.frameon": False, "lines.linewidth": 1.2, "lines.markersize": 4,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.linewidth": 0.4,
    "grid.alpha": 0.4, "axes.prop_cycle": cycler(color=PRUNER_COLOURS), "figure.dpi": SCREEN_DPI,
    "savefig.dpi": 300, "savefig.bbox": "tight", "pdf.fonttype": 42, "svg.fonttype": "none",
}


def pruner_name(pruner: str) -> str:
    """The full name of a pruner (``"l2"`` -> ``"L2-norm filter"``); unknown names unchanged."""
    return PRUNER_NAMES.get(str(pruner), str(pruner))


def control_name(control: str) -> str:
    """A control as legends say it: ``"control: fine-tune only"``, ``"randomised at features.3"``."""
    if str(control).startswith(schema.RANDOMISED_PREFIX):
        return f"randomised at {str(control)[len(schema.RANDOMISED_PREFIX):]}"
    return CONTROL_NAMES.get(str(control), str(control))


def cam_name(cam: str) -> str:
    """The usual spelling of a CAM method (``"gradcam++"`` -> ``"Grad-CAM++"``); unknown names unchanged."""
    return CAM_NAMES.get(str(cam), str(cam))


def model_name(ds: xr.Dataset, model: str) -> str:
    """A model as a reader says it: ``"L2-norm filter @ 0.30"``, ``"reference"``, ``"control: fine-tune only"``."""
    role = str(ds[schema.ROLE].sel({schema.MODEL: model}).values) if schema.ROLE in ds.coords else ""
    if role == schema.REFERENCE:
        return schema.REFERENCE
    if role == schema.CONTROL:
        return control_name(model)
    ratio = float(ds[schema.RATIO].sel({schema.MODEL: model}))
    pruner = str(ds[schema.PRUNER].sel({schema.MODEL: model}).values)
    return str(model) if np.isnan(ratio) else f"{pruner_name(pruner)} @ {ratio:.2f}"


def where_text(layer: str, cam: str) -> str:
    """``"layer features.3 · Grad-CAM++"``: what every figure's title says it shows."""
    return f"layer {layer} · {cam_name(cam)}"


def grey_picture(picture: np.ndarray) -> np.ndarray:
    """A picture ``(H, W, 3)`` uint8 as grey ``(H, W, 3)`` float in [0, 255] (Rec. 601 luma), so a
    map drawn over it is read from the colour map alone, not mixed with the object's colours."""
    luma = np.asarray(picture, dtype=np.float32)[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat(luma[..., None], 3, axis=2)


def difference_limit(difference: np.ndarray) -> float:
    """The symmetric range ``L`` (from :data:`DIFFERENCE_LIMITS`) to draw a difference map over:
    the smallest one holding the 99th percentile of ``|difference|``, so small drifts stay visible."""
    magnitude = float(np.percentile(np.abs(np.nan_to_num(difference)), 99)) if np.size(difference) else 0.0
    return next((limit for limit in DIFFERENCE_LIMITS if magnitude <= limit), DIFFERENCE_LIMITS[-1])


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
        if "method" in kwargs:
            raise TypeError(f"{plot.__name__}() takes cam= for the CAM method (method= was its old name).")
        with mpl.rc_context(STYLE):
            fig = plot(*args, **kwargs)
        if path is not None:
            save(fig, path)
        return fig
    return wrapper


def seeds_text(ds: xr.Dataset, seed: int | None = None) -> str:
    """Which seeds a figure shows: ``"fine-tuning seed 1"``, ``"mean of 3 seeds"`` when groups have
    several, ``""`` when each group is one model."""
    if seed is not None:
        return f"fine-tuning seed {seed}"
    return f"mean of {len(structure.all_seeds(ds))} seeds" if grouping.several_seeds(ds) else ""


def where_seeds_text(layer: str, cam: str, ds: xr.Dataset, seed: int | None = None) -> str:
    """:func:`where_text` and :func:`seeds_text`: ``"layer features.3 · Grad-CAM++ · mean of 3 seeds"``."""
    return " · ".join(filter(None, [where_text(layer, cam), seeds_text(ds, seed)]))


def _spread(ds: xr.Dataset, values: xr.DataArray, seed: int | None) -> tuple[xr.DataArray, xr.DataArray] | None:
    """The lowest and highest of ``values (model, ...)`` over each group's seeds (:func:`structure.by_group`);
    None when one seed is drawn or no group has several."""
    if seed is not None or not grouping.several_seeds(ds):
        return None
    return structure.by_group(values, ds, "min"), structure.by_group(values, ds, "max")


def _error_bars(ax, x, y, colour: str, y_range=None, x_range=None) -> None:
    """Error bars from ``y_range = (low (n,), high (n,))`` (and ``x_range``) around the points ``(x, y)``."""
    def error(centre, extremes):
        return None if extremes is None else np.maximum(0.0, [centre - extremes[0], extremes[1] - centre])
    ax.errorbar(x, y, yerr=error(np.asarray(y), y_range), xerr=error(np.asarray(x), x_range), ecolor=colour,
                label=SEED_RANGE, **SPREAD_STYLE)


@_styled
def pe_vs_ratio(ds: xr.Dataset, variable: str = schema.PE, layer: str | None = None, cam: str | None = None,
                seed: int | None = None, level: float = 0.95, n_resamples: int = 1000, bootstrap_seed: int = 0,
                pe_threshold: float = structure.PE_THRESHOLD,
                max_accuracy_drop: float = structure.MAX_ACCURACY_DROP) -> Figure:
    """The paper's core figure: score (top) and accuracy (bottom) vs pruning ratio, a line per pruner.

    Bands are stratified bootstrap intervals over the test images (:func:`stats.bootstrap`, drawn
    with ``bootstrap_seed``); with several fine-tuning seeds the lines are each group's mean over
    its seeds (the bands those means' intervals) and error bars run from the lowest to the highest
    seed (``seed``: one seed's models instead). The accuracy and its band come from the per-image
    ``pred == label`` when ``pred`` is stored, else the ``accuracy`` coordinate is drawn without a
    band. The reference (unpruned) model is the star at ratio 0; the controls are labelled markers
    at ratio 0. Reference lines: the control's PE (or, without a control, ``pe_threshold``), the
    accuracy budget (reference minus ``max_accuracy_drop``) and chance accuracy (1 / number of classes).
    Each panel's axes fit the lines, bands, error bars and reference lines; a control far outside
    them (a randomised copy) is drawn at the edge, as in :func:`drop_scatter`.
    """
    ds, layer, cam = _select(ds, layer, cam)
    view = grouping.seed_view(ds, seed)
    fig = Figure(figsize=(COLUMN_WIDTH, 4.0), layout="constrained")
    score_ax, accuracy_ax = fig.subplots(2, 1, sharex=True)
    intervals = stats.bootstrap(view, variable, n_resamples=n_resamples, level=level, seed=bootstrap_seed)
    if grouping.CORRECT in view:
        accuracy = stats.bootstrap(view, grouping.CORRECT, n_resamples=n_resamples, level=level,
                                   seed=bootstrap_seed, class_weights="support")
    else:
        accuracy = xr.Dataset({"estimate": view[schema.ACCURACY]})
    control = structure.control(view)
    trust_pe = float(intervals["estimate"].sel(model=control)) if control is not None else pe_threshold
    budget = float(view[schema.ACCURACY].sel(model=structure.reference(view))) - max_accuracy_drop
    n_classes = len(np.unique(ds[schema.LABEL].values))
    score_labels = _lines_with_bands(score_ax, view, intervals, _spread(ds, score(ds, variable), seed), [trust_pe],
                                     LABELS.get(variable, variable))
    accuracy_labels = _lines_with_bands(accuracy_ax, view, accuracy, _spread(ds, ds[schema.ACCURACY], seed),
                                        [budget, 1.0 / n_classes], LABELS[schema.ACCURACY].lower(), annotate=False)
    trust_line = "control PE (fine-tune only)" if control is not None else f"trust threshold {pe_threshold:g}"
    score_ax.axhline(trust_pe, color="0.35", linestyle="--", linewidth=0.8, label=trust_line)
    accuracy_ax.axhline(budget, color="0.35", linestyle="--", linewidth=0.8,
                        label=f"accuracy budget (−{max_accuracy_drop * 100:g} points)")
    accuracy_ax.axhline(1.0 / n_classes, color="0.6", linestyle=":", linewidth=0.8,
                        label=f"chance (1/{n_classes})")
    score_ax.set_ylabel(LABELS.get(variable, variable))
    accuracy_ax.set_ylabel(LABELS[schema.ACCURACY])
    accuracy_ax.set_xlabel("Pruning ratio")
    score_ax.set_title(f"{LABELS.get(variable, variable)} and accuracy vs pruning ratio\n"
                       f"{where_seeds_text(layer, cam, ds, seed)}")
    handles, labels = _unique_legend_entries([score_ax, accuracy_ax])
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    _place_labels(fig, score_ax, score_labels)
    _place_labels(fig, accuracy_ax, accuracy_labels)
    return fig


def _lines_with_bands(ax, view: xr.Dataset, interval: xr.Dataset, spread, lines: list[float], quantity: str,
                      annotate: bool = True) -> list[tuple[float, float, str, str]]:
    """One line (and band, when ``interval`` has ``low``/``high``) per pruner, from the reference at
    0; the reference as a star and each control as a marker at ratio 0. ``view``: one model per group
    (:func:`grouping.seed_view`); ``spread``: the (lowest, highest) seed of each group, drawn as error
    bars. The axes fit all of that and the reference ``lines`` (heights); a control far outside is drawn
    at the edge (:func:`_fit_with_controls`, saying its ``quantity``). Returns the controls' labels for
    :func:`_place_labels`: the edge's first, then (``annotate``) each control's short name beside its marker."""
    reference = structure.reference(view)
    extent = [(0.0, float(interval["estimate"].sel(model=reference)))] + [(0.0, height) for height in lines]
    for pruner, style in _pruner_styles(view).items():
        models = [reference] + structure.by_ratio(view, pruner)
        ratios = view[schema.RATIO].sel(model=models).values
        estimate = interval["estimate"].sel(model=models).values
        ax.plot(ratios, estimate, label=pruner_name(pruner), **style)
        extent += list(zip(ratios, estimate))
        if "low" in interval:
            low, high = (interval[end].sel(model=models).values for end in ("low", "high"))
            ax.fill_between(ratios, low, high, color=style["color"], alpha=0.2, linewidth=0)
            extent += list(zip(ratios, low)) + list(zip(ratios, high))
        if spread is not None:
            extremes = [extreme.sel(model=models).values for extreme in spread]
            _error_bars(ax, ratios, estimate, style["color"], extremes)
            extent += [point for extreme in extremes for point in zip(ratios, extreme)]
    ax.plot([0.0], [float(interval["estimate"].sel(model=reference))], label=schema.REFERENCE, **REFERENCE_STYLE)
    controls = {control: (0.0, float(interval["estimate"].sel(model=control))) for control in structure.controls(view)}
    labels = _fit_with_controls(ax, extent, controls, {control: f"{quantity} {value:.2f}"
                                                       for control, (_, value) in controls.items()})
    limits = [ax.get_xlim(), ax.get_ylim()]
    for control, point in controls.items():
        if _inside(point, limits):  # drawn in place by _fit_with_controls
            style = CONTROL_STYLES.get(control, CONTROL_STYLES[schema.CONTROL_TWIN])
            if spread is not None:
                _error_bars(ax, [0.0], [point[1]], style["color"],
                            [extreme.sel(model=[control]).values for extreme in spread])
            if annotate:
                short = "fine-tune" if control == schema.CONTROL_FINETUNE else control.split(":")[-1]
                labels.append((*point, short, style["color"]))
    return labels


def _unique_legend_entries(axes) -> tuple[list, list]:
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    return handles, labels


@_styled
def pe_vs_cost(ds: xr.Dataset, variable: str = schema.PE, layer: str | None = None, cam: str | None = None,
               costs: tuple[str, ...] = (schema.MACS, schema.PARAMS), seed: int | None = None) -> Figure:
    """Score vs cost, one panel per cost (``macs``, ``params``), a line per pruner, so pruners are
    compared at equal cost rather than equal ratio (a ratio removes different amounts of compute
    in each method). Costs are shares of the reference's; the reference is the star at 1. With
    several seeds: each group's mean, error bars from the lowest to the highest seed."""
    ds, layer, cam = _select(ds, layer, cam)
    view = grouping.seed_view(ds, seed)
    scores = score(view, variable)
    spread = _spread(ds, score(ds, variable), seed)
    reference = structure.reference(view)
    fig = Figure(figsize=(COLUMN_WIDTH, 1.0 + 1.6 * len(costs)), layout="constrained")
    axes = fig.subplots(len(costs), 1, sharey=True, squeeze=False)[:, 0]
    for ax, cost in zip(axes, costs):
        full = float(view[cost].sel(model=reference))
        for pruner, style in _pruner_styles(view).items():
            models = [reference] + structure.by_ratio(view, pruner)
            share = view[cost].sel(model=models).values.astype(float) / full
            ax.plot(share, scores.sel(model=models).values, label=pruner_name(pruner), **style)
            if spread is not None:
                _error_bars(ax, share, scores.sel(model=models).values, style["color"],
                            [extreme.sel(model=models).values for extreme in spread])
        ax.plot([1.0], [float(scores.sel(model=reference))], label=schema.REFERENCE, **REFERENCE_STYLE)
        ax.set_xlabel(f"{COSTS.get(cost, cost)}, share of the reference's ({_count(full)})")
        ax.set_ylabel(LABELS.get(variable, variable))
        ax.set_xlim(0, 1.05)
        ax.invert_xaxis()  # cheaper models to the right, as in the ratio plots
    axes[0].set_title(f"{LABELS.get(variable, variable)} at equal cost\n{where_seeds_text(layer, cam, ds, seed)}")
    handles, labels = _unique_legend_entries(axes[:1])
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    return fig


def _count(value: float) -> str:
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


@_styled
def class_bars(ds: xr.Dataset, ratio: float | None = None, variable: str = schema.PE, layer: str | None = None,
               cam: str | None = None, seed: int | None = None, level: float = 0.95, n_resamples: int = 1000,
               bootstrap_seed: int = 0, models: list[str] | None = None) -> Figure:
    """Per-class score of each pruner's model at ``ratio`` (or of the candidate groups ``models``; with
    neither, of every candidate, as for models without pruning ratios): bars with whiskers. With
    several seeds: each group's mean, whiskers from the lowest to the highest seed; else (or with
    ``seed``) the stratified bootstrap interval over the test images."""
    ds, layer, cam = _select(ds, layer, cam)
    view = grouping.seed_view(ds, seed)
    candidates = structure.models_with_role(view, schema.CANDIDATE)
    if ratio is not None and models is not None:
        raise ValueError("Pass ratio= (each pruner's model there) or models= (group names), not both.")
    if ratio is not None:
        found = view[schema.RATIO].sel(model=candidates).values.astype(float)
        models = [name for name, r in zip(candidates, found) if np.isclose(r, ratio)]
        if not models:
            ratios = sorted({float(r) for r in found if not np.isnan(r)})
            raise ValueError(f"No pruned model at ratio {ratio}; the Dataset has ratios {ratios}.")
    else:
        models = candidates if models is None else list(models)
        unknown = [name for name in models if name not in candidates]
        if unknown or not models:
            raise ValueError(f"No candidate group {unknown or models}; the candidates are {candidates}.")
    spread = _spread(ds, by_class(ds, variable), seed)
    if spread is None:
        intervals = stats.bootstrap(view.sel(model=models), variable, per_class=True, n_resamples=n_resamples,
                                    level=level, seed=bootstrap_seed)
        whiskers = f"{level:.0%} bootstrap interval"
    else:
        intervals = xr.Dataset({"estimate": by_class(view, variable), "low": spread[0], "high": spread[1]})
        whiskers = SEED_RANGE
    styles = _model_styles(view, models)
    classes = intervals[schema.CLASS_NAME].values
    width = 0.8 / len(models)
    fig = Figure(figsize=(COLUMN_WIDTH, 2.6), layout="constrained")
    ax = fig.subplots()
    for position, model in enumerate(models):
        interval = intervals.sel(model=model)
        estimate = interval["estimate"].values
        error = np.maximum(0.0, [estimate - interval["low"].values, interval["high"].values - estimate])
        name = pruner_name(str(view[schema.PRUNER].sel(model=model).values)) if ratio is not None \
            else model_name(view, model)
        ax.bar(np.arange(len(classes)) + (position - (len(models) - 1) / 2) * width, estimate, width,
               yerr=error, color=styles[model]["color"], label=name, error_kw={"linewidth": 0.8})
    slanted = len(classes) > 4  # long rows of class names would overlap
    ax.set_xticks(np.arange(len(classes)), classes, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    at = f" at ratio {ratio:g}" if ratio is not None else ""
    ax.set_ylabel(f"{LABELS.get(variable, variable)}{at}")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="x", visible=False)
    ax.set_title(f"{LABELS.get(variable, variable)} per class{at} · {where_text(layer, cam)}\n"
                 + " · ".join(filter(None, [seeds_text(ds, seed), f"whiskers: {whiskers}"])))
    fig.legend(loc="outside lower center", ncols=min(len(models), 3))
    return fig


def _model_styles(view: xr.Dataset, models: list[str]) -> dict[str, dict[str, Any]]:
    """Colour and marker of each of ``models``: its pruner's (:func:`_pruner_styles`) when the
    candidates have pruning ratios, else one of its own (a user's models, one per pruner or none)."""
    if structure.has_ratios(view):
        styles = _pruner_styles(view)
        return {model: styles[str(view[schema.PRUNER].sel(model=model).values)] for model in models}
    return {model: {"color": PRUNER_COLOURS[i % len(PRUNER_COLOURS)], "marker": PRUNER_MARKERS[i % len(PRUNER_MARKERS)]}
            for i, model in enumerate(models)}


@_styled
def pe_vs_accuracy(ds: xr.Dataset, variable: str = schema.PE, layer: str | None = None, cam: str | None = None,
                   seed: int | None = None, pe_threshold: float = structure.PE_THRESHOLD,
                   max_accuracy_drop: float = structure.MAX_ACCURACY_DROP) -> Figure:
    """Score against accuracy, a point per model (group): the two criteria of the trust rule at once,
    for any candidates, with or without pruning ratios. Candidates with ratios take their pruner's
    colour and their ratio beside the point; others their own colour and their name.

    Lines: the accuracy budget (the reference's accuracy minus ``max_accuracy_drop``) and the
    control's PE (or, without a control, ``pe_threshold``); a point right of the budget and above
    the PE line passes both by its mean (the rule itself bounds the PE gap, see
    :func:`pescore_nb.trust.assess`). The reference is the star, controls grey. The axes fit the
    candidates, the reference and both lines; a control far outside (a randomised copy) is drawn at
    the edge, as in :func:`drop_scatter`. With several seeds: each group's mean, error bars from the
    lowest to the highest seed in both.
    """
    ds, layer, cam = _select(ds, layer, cam)
    view = grouping.seed_view(ds, seed)
    scores, accuracy = score(view, variable), view[schema.ACCURACY]
    score_spread, accuracy_spread = _spread(ds, score(ds, variable), seed), _spread(ds, ds[schema.ACCURACY], seed)
    reference = structure.reference(view)
    candidates = structure.models_with_role(view, schema.CANDIDATE)
    by_ratio = structure.has_ratios(view)  # then a pruner's colour, and its ratio beside each point
    fig = Figure(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
    ax = fig.subplots()
    labels, extent = [], []
    for model, style in _model_styles(view, candidates).items():
        x, y = float(accuracy.sel(model=model)), float(scores.sel(model=model))
        extent.append((x, y))
        legend = pruner_name(str(view[schema.PRUNER].sel(model=model).values)) if by_ratio else model_name(view, model)
        ax.plot([x], [y], linestyle="none", label=legend, **style)
        if score_spread is not None and accuracy_spread is not None:
            _error_bars(ax, [x], [y], style["color"], [extreme.sel(model=[model]).values for extreme in score_spread],
                        [extreme.sel(model=[model]).values for extreme in accuracy_spread])
        text = f"{float(view[schema.RATIO].sel(model=model)):g}" if by_ratio else model_name(view, model)
        labels.append((x, y, text, style["color"]))
    reference_point = (float(accuracy.sel(model=reference)), float(scores.sel(model=reference)))
    ax.plot([reference_point[0]], [reference_point[1]], label=schema.REFERENCE, **REFERENCE_STYLE)
    control = structure.control(view)
    pe_line = float(scores.sel(model=control)) if control is not None else pe_threshold
    budget = reference_point[0] - max_accuracy_drop
    controls = {name: (float(accuracy.sel(model=name)), float(scores.sel(model=name)))
                for name in structure.controls(view)}
    labels = _fit_with_controls(ax, extent + [reference_point, (budget, pe_line)], controls, {
        name: f"{LABELS.get(variable, variable)} {y:.2f}, accuracy {x:.2f}" for name, (x, y) in controls.items()
    }) + labels
    ax.axhline(pe_line, color="0.35", linestyle="--", linewidth=0.8,
               label="control PE (fine-tune only)" if control is not None else f"trust threshold {pe_threshold:g}")
    ax.axvline(budget, color="0.3", linestyle=":", linewidth=0.8,
               label=f"accuracy budget (−{max_accuracy_drop * 100:g} points)")
    ax.set_xlabel(LABELS[schema.ACCURACY])
    ax.set_ylabel(LABELS.get(variable, variable))
    ax.set_title(f"{LABELS.get(variable, variable)} against accuracy\n"
                 + " · ".join(filter(None, [where_seeds_text(layer, cam, ds, seed),
                                            "numbers: pruning ratio" if by_ratio else ""])))
    handles, names = _unique_legend_entries([ax])
    fig.legend(handles, names, loc="outside lower center", ncols=2)
    _place_labels(fig, ax, labels)
    return fig


@_styled
def heatmap_grid(ds: xr.Dataset, pruner: str | None = None, images: int | list = 4, layer: str | None = None,
                 cam: str | None = None, alpha: float = OVERLAY_ALPHA, seed: int | None = None) -> Figure:
    """CAMs of ``images`` (rows; an int takes the first ones, a list names ``image`` values) for the
    reference and each ratio of ``pruner`` (columns; default the first), over a grey copy of the
    ``input`` picture; under each panel its PE, beside each row the class and ``#source_index``.
    With several fine-tuning seeds the maps are one seed's (``seed``; default the smallest), which
    the title names."""
    ds, layer, cam = _select(ds, layer, cam)
    shown = grouping.shown_seed(ds, seed)
    ds = grouping.seed_view(ds, shown)
    pruner = pruner or next(iter(_pruner_styles(ds)))
    if pruner not in structure.pruners(ds):
        raise KeyError(f"No pruner {pruner!r} in the Dataset; it has {structure.pruners(ds)}.")
    models = [structure.reference(ds)] + structure.by_ratio(ds, pruner)
    ds = _images(ds, images)
    width = COLUMN_WIDTH if len(models) <= 5 else 2 * COLUMN_WIDTH  # many ratios: a full-width figure
    fig = Figure(figsize=(width, 0.5 + width * 1.12 * ds.sizes[schema.IMAGE] / (len(models) + 0.3)),
                 layout="constrained")
    where = where_seeds_text(layer, cam, ds, shown)
    fig.suptitle(f"CAMs as the {pruner_name(pruner)} pruning ratio grows\n{where}",
                 fontsize=mpl.rcParams["axes.titlesize"])
    axes = fig.subplots(ds.sizes[schema.IMAGE], len(models), squeeze=False)
    for row, image in enumerate(ds[schema.IMAGE].values):
        for col, model in enumerate(models):
            _map_panel(axes[row, col], ds, model, image, alpha)
            if row == 0:
                ratio = float(ds[schema.RATIO].sel(model=model))
                axes[row, col].set_title("reference" if col == 0 else f"{ratio:g}", fontsize="small")
    _row_labels(ds, axes[:, 0])
    colours = mpl.cm.ScalarMappable(mpl.colors.Normalize(0, 1), CAM_COLORMAP)  # opaque, unlike the overlay
    fig.colorbar(colours, ax=axes, shrink=0.6, label="CAM")
    return fig


@_styled
def side_by_side(ds: xr.Dataset, model: str | None = None, images: int | list = 4, layer: str | None = None,
                 cam: str | None = None, alpha: float = OVERLAY_ALPHA, seed: int | None = None) -> Figure:
    """One candidate's CAMs beside the reference's, for models with or without pruning ratios:
    ``images`` rows (an int takes the first ones, a list names ``image`` values); columns the
    reference and ``model`` (a group name; default the first candidate) over a grey copy of the
    ``input`` picture, with the PE under the candidate's, and their difference (candidate minus
    reference, :data:`DIFFERENCE_COLORMAP` over :func:`difference_limit`'s range: red where the
    candidate looks more). With several fine-tuning seeds the maps are one seed's (``seed``;
    default the smallest), which the title names."""
    ds, layer, cam = _select(ds, layer, cam)
    shown = grouping.shown_seed(ds, seed)
    ds = grouping.seed_view(ds, shown)
    candidates = structure.models_with_role(ds, schema.CANDIDATE)
    model = candidates[0] if model is None else model
    if model not in candidates:
        raise KeyError(f"No candidate {model!r} in the Dataset; the candidates are {candidates}.")
    reference = structure.reference(ds)
    ds = _images(ds, images)
    difference = (ds[schema.HEATMAP].sel(model=model).astype(np.float32)
                  - ds[schema.HEATMAP].sel(model=reference).astype(np.float32)).values  # (image, y, x)
    limit = difference_limit(difference)
    fig = Figure(figsize=(COLUMN_WIDTH, 0.7 + COLUMN_WIDTH * 1.05 * ds.sizes[schema.IMAGE] / 3.6),
                 layout="constrained")
    fig.suptitle(f"CAMs of {model_name(ds, model)} beside the reference's\n"
                 f"{where_seeds_text(layer, cam, ds, shown)}", fontsize=mpl.rcParams["axes.titlesize"])
    axes = fig.subplots(ds.sizes[schema.IMAGE], 3, squeeze=False)
    for row, image in enumerate(ds[schema.IMAGE].values):
        _map_panel(axes[row, 0], ds, reference, image, alpha, with_pe=False)
        _map_panel(axes[row, 1], ds, model, image, alpha)
        shown_difference = axes[row, 2].imshow(difference[row], cmap=DIFFERENCE_COLORMAP, vmin=-limit, vmax=limit,
                                               extent=(0, 1, 1, 0))
        _bare(axes[row, 2])
    for ax, title in zip(axes[0], ["reference", "candidate", "candidate − reference"]):
        ax.set_title(title, fontsize="small")
    _row_labels(ds, axes[:, 0])
    colours = mpl.cm.ScalarMappable(mpl.colors.Normalize(0, 1), CAM_COLORMAP)
    fig.colorbar(colours, ax=axes[:, :2], shrink=0.6, label="CAM", location="bottom")
    fig.colorbar(shown_difference, ax=axes[:, 2], shrink=0.9, label="difference", location="bottom",
                 ticks=[-limit, 0, limit])
    return fig


def _images(ds: xr.Dataset, images: int | list) -> xr.Dataset:
    """``ds`` at the first ``images`` images (an int) or at the named ``image`` values (a list)."""
    return ds.isel(image=slice(images)) if isinstance(images, int) else ds.sel(image=list(images))


def _map_panel(ax, ds: xr.Dataset, model: str, image, alpha: float, with_pe: bool = True) -> None:
    """``model``'s CAM of ``image`` over a grey copy of the ``input`` picture (when stored), its PE below."""
    extent = (0, 1, 1, 0)  # input and heatmap share the axes whatever their resolutions
    if schema.INPUT in ds:
        picture = ds[schema.INPUT].sel(image=image).transpose(schema.Y, schema.X, schema.CHANNEL).values
        picture = np.repeat(picture, 3, axis=2) if picture.shape[-1] == 1 else picture
        ax.imshow(grey_picture(picture).astype(np.uint8), extent=extent)
    heatmap = ds[schema.HEATMAP].sel(model=model, image=image).values.astype(np.float32)
    ax.imshow(heatmap, cmap=CAM_COLORMAP, vmin=0, vmax=1, extent=extent, alpha=alpha if schema.INPUT in ds else 1.0)
    _bare(ax)
    if with_pe and schema.PE in ds:
        ax.set_xlabel(f"PE {float(ds[schema.PE].sel(model=model, image=image)):.2f}", fontsize="small", labelpad=1)


def _bare(ax) -> None:
    """No ticks, grid or frame: a picture panel."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.spines[:].set_visible(False)


def _row_labels(ds: xr.Dataset, first_column) -> None:
    """Beside each row of a maps grid: the image's class and ``#source_index``."""
    ids = ds[schema.SOURCE_INDEX].values if schema.SOURCE_INDEX in ds.coords else ds[schema.IMAGE].values
    for ax, image, shown_id in zip(first_column, ds[schema.IMAGE].values, ids):
        ax.set_ylabel(f"{_class_name(ds, image)}\n#{shown_id}", fontsize="small")


@_styled
def drop_scatter(ds: xr.Dataset, variable: str = schema.PE, layer: str | None = None,
                 cam: str | None = None, max_accuracy_drop: float = structure.MAX_ACCURACY_DROP,
                 seed: int | None = None) -> Figure:
    """Score drop vs accuracy drop of every pruned model, from the reference; a line per pruner.

    Points far above the diagonal are models whose accuracy hides a drift of attention; the
    dotted line marks the accuracy budget. Numbers beside the points are pruning ratios, placed
    by :func:`_place_labels` where they overlap neither another label nor a marker, inside the
    axes. With several seeds: each group's mean, error bars from the lowest to the highest seed in
    both drops. The axes fit the candidates (and the accuracy budget); a control within
    :data:`CONTROL_REACH` of them widens the axes, one further out (a randomised copy, often a
    twin) is drawn at the edge, its marker pointing the way it lies, labelled with its name, an
    arrow and its own score (``"randomised copy → (PE-score 0.07)"``).
    """
    ds, layer, cam = _select(ds, layer, cam)
    view = grouping.seed_view(ds, seed)
    scores = score(view, variable)
    reference = structure.reference(view)
    score_drop = float(scores.sel(model=reference)) - scores
    accuracy_drop = structure.accuracy_drop(view)
    score_spread = _spread(ds, score(ds, variable), seed)
    drop_ranges = None
    if score_spread is not None:  # a drop's lowest seed is the score's highest
        accuracy_low, accuracy_high = (structure.by_group(ds[schema.ACCURACY], ds, how) for how in ("min", "max"))
        reference_accuracy = float(view[schema.ACCURACY].sel(model=reference))
        drop_ranges = {"x": (reference_accuracy - accuracy_high, reference_accuracy - accuracy_low),
                       "y": (float(scores.sel(model=reference)) - score_spread[1],
                             float(scores.sel(model=reference)) - score_spread[0])}
    fig = Figure(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
    ax = fig.subplots()
    ratio_labels, extent = [], [(0.0, 0.0), (max_accuracy_drop, 0.0)]
    for pruner, style in _pruner_styles(view).items():
        models = structure.by_ratio(view, pruner)
        x, y = accuracy_drop.sel(model=models).values, score_drop.sel(model=models).values
        ax.plot(x, y, label=pruner_name(pruner), **style)
        ratio_labels += [(x_i, y_i, f"{float(view[schema.RATIO].sel(model=model)):g}", style["color"])
                         for model, x_i, y_i in zip(models, x, y)]
        extent += list(zip(x, y))
        if drop_ranges is not None:
            ranges = {axis: [extreme.sel(model=models).values for extreme in drop_ranges[axis]] for axis in "xy"}
            _error_bars(ax, x, y, style["color"], ranges["y"], ranges["x"])
            extent += list(zip(ranges["x"][0], ranges["y"][0])) + list(zip(ranges["x"][1], ranges["y"][1]))
    controls = {control: (float(accuracy_drop.sel(model=control)), float(score_drop.sel(model=control)))
                for control in structure.controls(view)}
    edge_labels = _fit_with_controls(ax, extent, controls, {
        control: f"{LABELS.get(variable, variable)} {float(scores.sel(model=control)):.2f}" for control in controls})
    ax.axline((0, 0), slope=1, color="0.6", linestyle="--", linewidth=0.8, label="equal drop")
    ax.axvline(max_accuracy_drop, color="0.3", linestyle=":", linewidth=0.8,
               label=f"accuracy budget ({max_accuracy_drop * 100:g} points)")
    ax.set_xlabel(f"{LABELS[schema.ACCURACY]} drop")
    ax.set_ylabel(f"{LABELS.get(variable, variable)} drop")
    ax.set_title(f"Drops from the reference · {where_text(layer, cam)}\n"
                 + " · ".join(filter(None, [seeds_text(ds, seed), "numbers beside the points: pruning ratio"])))
    handles, labels = _unique_legend_entries([ax])
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    _place_labels(fig, ax, edge_labels + ratio_labels)  # the edge's labels first: they say why a point is there
    return fig


CONTROL_REACH = 0.5  # a figure widens its axes for a control within half their span beyond them


def _padded(values: list[float], share: float = 0.08) -> tuple[float, float]:
    """The range of ``values`` widened by ``share`` of itself on each side (0.01 at least)."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(share * (high - low), 0.01)
    return low - pad, high + pad


def _widened(limits: tuple[float, float], share: float) -> tuple[float, float]:
    """``limits`` widened by ``share`` of their span on each side."""
    low, high = limits
    return low - share * (high - low), high + share * (high - low)


def _inside(point: tuple[float, float], limits: list[tuple[float, float]]) -> bool:
    return all(low <= value <= high for value, (low, high) in zip(point, limits))


OFF_SCALE_ARROWS = {(1, 0): "→", (-1, 0): "←", (0, 1): "↑", (0, -1): "↓"}


def _fit_with_controls(ax, extent: list[tuple[float, float]], controls: dict[str, tuple[float, float]],
                       values: dict[str, str]) -> list[tuple[float, float, str, str]]:
    """Fit the axes to ``extent`` (the candidates' points, and what the figure must show) and to the
    ``controls`` ``{name: (x, y)}`` within :data:`CONTROL_REACH` of it, drawn in place; draw each other
    control at the edge (:func:`_off_scale`, ``values[name]`` saying where it lies). Returns the edge
    labels for :func:`_place_labels`."""
    reach = [_widened(_padded([point[axis] for point in extent]), CONTROL_REACH) for axis in (0, 1)]
    near = [control for control, point in controls.items() if _inside(point, reach)]
    limits = [_padded([point[axis] for point in extent + [controls[c] for c in near]]) for axis in (0, 1)]
    labels = []
    for control, point in controls.items():
        style = CONTROL_STYLES.get(control, CONTROL_STYLES[schema.CONTROL_TWIN])
        if control in near:
            ax.plot([point[0]], [point[1]], label=control_name(control), **style)
        else:
            labels.append(_off_scale(ax, point, limits, control, style, values[control]))
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    return labels


def _off_scale(ax, point: tuple[float, float], limits: list[tuple[float, float]], control: str,
               style: dict, where: str) -> tuple[float, float, str, str]:
    """A control beyond the axes drawn at their edge, its marker pointing the way it lies; returns its
    label for :func:`_place_labels`, ``(x, y, text, colour)`` at the edge: its name, an arrow and
    ``where`` it lies (``"randomised copy → (PE-score 0.07)"``)."""
    clipped = [min(max(value, low), high) for value, (low, high) in zip(point, limits)]
    beyond_x = int(np.sign(point[0] - clipped[0]))
    direction = (beyond_x, 0) if beyond_x else (0, int(np.sign(point[1] - clipped[1])))
    name = "randomised copy" if control.startswith(schema.RANDOMISED_PREFIX) else control_name(control)
    ax.plot([clipped[0]], [clipped[1]], label=f"{control_name(control)} (off scale, at the edge)", clip_on=False,
            **{**style, "marker": OFF_SCALE_MARKERS[direction]})
    text = f"{name} {OFF_SCALE_ARROWS[direction]} ({where})"
    return clipped[0], clipped[1], text, style["color"]


LABEL_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)]
LABEL_DISTANCES = (4, 9, 15, 24, 36)  # points from a marker's centre to its label's nearest corner or edge


def _place_labels(fig: Figure, ax, points: list[tuple[float, float, str, str]], fontsize: float = 6) -> None:
    """Annotate each ``(x, y, text, colour)``, in order, at the nearest place (:data:`LABEL_DISTANCES`
    in each of :data:`LABEL_DIRECTIONS`, in its point's colour) where its box lies inside the axes and
    overlaps no placed label and no marker. A label with no free place is left out (its point's
    place on its line still says it)."""
    renderer = FigureCanvasAgg(fig).get_renderer()  # text sizes need a renderer; Agg's also saves and shows
    fig.draw_without_rendering()        # constrained layout settles the axes first ...
    fig.set_layout_engine("none")       # ... and the labels must not move them afterwards
    radius = mpl.rcParams["lines.markersize"] * fig.dpi / 72 * 0.8
    markers = [ax.transData.transform((x, y)) for x, y, _, _ in points]
    occupied = [mpl.transforms.Bbox.from_extents(mx - radius, my - radius, mx + radius, my + radius)
                for mx, my in markers]
    frame = ax.get_window_extent(renderer)
    places = [(distance, dx, dy) for distance in LABEL_DISTANCES for dx, dy in LABEL_DIRECTIONS]
    for x, y, text, colour in points:
        for distance, dx, dy in places:
            label = ax.annotate(text, (x, y), xytext=(dx * distance, dy * distance), textcoords="offset points",
                                fontsize=fontsize, color=colour, annotation_clip=False,
                                ha={1: "left", 0: "center", -1: "right"}[dx],
                                va={1: "bottom", 0: "center", -1: "top"}[dy])
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in occupied):
                occupied.append(box)
                break
            label.remove()


@_styled
def decomposition(ds: xr.Dataset, layer: str | None = None, cam: str | None = None,
                  seed: int | None = None) -> Figure:
    """SSIM, IoU and Conf (class-weighted) beside PE vs ratio: one panel per pruner (with several
    seeds: each group's mean over them, or ``seed``'s models)."""
    ds, layer, cam = _select(ds, layer, cam)
    where = where_seeds_text(layer, cam, ds, seed)
    ds = grouping.seed_view(ds, seed)
    terms = {schema.SSIM: (OKABE_ITO["sky blue"], "o", "-"), schema.IOU: (OKABE_ITO["vermillion"], "s", "--"),
             schema.CONF: (OKABE_ITO["bluish green"], "^", "-."), schema.PE: (OKABE_ITO["black"], "", "-")}
    scores = {term: score(ds, term) for term in terms}
    pruners = list(_pruner_styles(ds))
    reference = structure.reference(ds)
    fig = Figure(figsize=(COLUMN_WIDTH, 0.8 + 1.5 * len(pruners)), layout="constrained")
    axes = fig.subplots(len(pruners), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, pruner in zip(axes, pruners):
        models = [reference] + structure.by_ratio(ds, pruner)
        ratios = ds[schema.RATIO].sel(model=models).values
        for term, (colour, marker, linestyle) in terms.items():
            ax.plot(ratios, scores[term].sel(model=models).values, color=colour, marker=marker,
                    linestyle=linestyle, linewidth=2.0 if term == schema.PE else 1.2, label=LABELS[term])
        ax.set_title(pruner_name(pruner), loc="left")
        ax.set_ylabel("Score")
        ax.set_ylim(0, 1.05)
    fig.suptitle(f"PE and its three terms · {where}", fontsize=mpl.rcParams["axes.titlesize"])
    axes[0].legend(loc="lower left", ncols=4)
    axes[-1].set_xlabel("Pruning ratio")
    return fig


@_styled
def layer_ratio_map(ds: xr.Dataset, variable: str = schema.PE, pruner: str | None = None,
                    cam: str | None = None, seed: int | None = None) -> Figure:
    """Score of every layer (rows) at every ratio of ``pruner`` (columns, the reference first); with
    several seeds each group's mean over them, or ``seed``'s models."""
    ds, _, cam = _select(ds, None, cam, keep_layers=True)
    seeds = seeds_text(ds, seed)
    ds = grouping.seed_view(ds, seed)
    pruner = pruner or next(iter(_pruner_styles(ds)))
    models = [structure.reference(ds)] + structure.by_ratio(ds, pruner)
    table = score(ds, variable).sel(model=models).transpose(schema.LAYER, schema.MODEL).values
    fig = Figure(figsize=(COLUMN_WIDTH, 1.1 + 0.35 * table.shape[0]), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(table, cmap=CAM_COLORMAP, vmin=0, vmax=1, aspect="auto")
    for (row, col), value in np.ndenumerate(table):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                color="black" if value > 0.6 else "white")
    ratios = ds[schema.RATIO].sel(model=models).values
    ax.set_xticks(range(len(models)), ["ref"] + [f"{r:g}" for r in ratios[1:]])
    ax.set_yticks(range(table.shape[0]), ds[schema.LAYER].values)
    ax.set_xlabel(f"Pruning ratio ({pruner_name(pruner)})")
    ax.set_title(" · ".join(filter(None, [f"{LABELS.get(variable, variable)} per layer", "every layer", cam_name(cam),
                                          seeds])))
    ax.grid(False)
    fig.colorbar(image, ax=ax, label=LABELS.get(variable, variable))
    return fig


def _select(ds: xr.Dataset, layer: str | None, cam: str | None,
            keep_layers: bool = False) -> tuple[xr.Dataset, str, str]:
    """``ds`` at one layer (unless ``keep_layers``: then the layer's name is ``""``) and one CAM method,
    the first ones by default, with the names selected."""
    choices = {schema.CAM: cam} if keep_layers else {schema.LAYER: layer, schema.CAM: cam}
    chosen: dict[str, str] = {}
    for dim, name in choices.items():
        available = ds[dim].values.tolist()
        if name is not None and name not in available:
            raise KeyError(f"No {dim} {name!r} in the Dataset; pass one of {available}.")
        chosen[dim] = available[0] if name is None else name
        ds = ds.sel({dim: chosen[dim]})
    return ds, chosen.get(schema.LAYER, ""), chosen[schema.CAM]


def _pruner_styles(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Colour and marker of each pruner (:func:`structure.pruners`, controls excluded), in order."""
    pruners = structure.pruners(ds)
    if not pruners:
        raise ValueError("The Dataset has no pruned candidate (every 'pruner' is "
                         f"{schema.UNPRUNED!r}); evaluate some candidates first.")
    return {p: {"color": PRUNER_COLOURS[i % len(PRUNER_COLOURS)], "marker": PRUNER_MARKERS[i % len(PRUNER_MARKERS)]}
            for i, p in enumerate(pruners)}


def _class_name(ds: xr.Dataset, image) -> str:
    names = ds[schema.CLASS_NAME] if schema.CLASS_NAME in ds.coords else ds[schema.LABEL]
    return str(names.sel(image=image).values)
