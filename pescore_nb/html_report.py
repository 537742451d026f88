"""A shareable report of a results Dataset: one self-contained HTML file (figures embedded as PNG
data, styles inline, nothing fetched from the network) that leads with the answer.

1. **The answer**: the question, the model and the data set by name, a verdict table (per pruner:
   the trusted ratio by the rule beside what accuracy alone would trust, the layer's state, the
   seeds; for candidates without ratios, per candidate) and the key figure.
2. **How to read this**: PE, SSIM, IoU, Conf, the controls and the rule in plain words; every
   figure below has a numbered caption saying what it shows.
3. The details: the verdicts with the rule, the layer checks, the model table by seed group (the
   mean over seeds and their range), the figures, the per-class results.
4. **Settings and provenance**, last, as tables.

Its verdict words are :mod:`pescore_nb.wording`'s, as the CLI's and the explorer's are. It prints
from the browser with every figure on one page (print styles in :data:`STYLE`).

    pescore_nb.html_report.report(ds, "report.html")

matplotlib is imported only when :func:`report` runs. :func:`format_recommendation` turns a
:func:`pescore_nb.recommend` table into the rounded table people read ("none trusted", never NaN).
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__, grouping, schema, structure, trust, wording
from .metrics import PEConfig
from .scores import DegenerateMapWarning, by_class, score

FIGURE_DPI = 150  # embedded PNGs: sharp on screen, a few hundred kB each
MAX_FAILING_CLASSES = 4
MAX_CLASS_NAMES = 8  # classes named in the answer; more are counted
STATE_CLASSES = {trust.TRUSTED: "trusted", trust.NOT_TRUSTED: "not-trusted", trust.NOT_ASSESSABLE: "not-assessable"}
QUESTION = ("Does the pruned model still look at the same pixels, with the same confidence, as the model it was "
            "pruned from?")
DATASET_ATTRIBUTES = ("dataset_name", "dataset")  # attrs (or provenance keys) that name the images' data set


def format_recommendation(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`pescore_nb.recommend` table as people read it: one row per (pruner, layer, cam), the
    pruner's full name, the trusted ratio as :func:`pescore_nb.wording.trusted_ratio_text` words it
    (``"0.30"``, ``"none trusted"``, ``"0.30 (layer flagged)"``), ratios to two decimals, scores to
    three, the accuracy drop in points, and ``"never"`` / ``""`` where the raw table holds None or NaN.

    Columns: ``pruner, layer, cam, trusted ratio, model, seeds, PE, bound, accuracy drop (points),
    first failure, fails on, failing classes, control PE, twin PE`` (``PE``: the mean over the
    group's seeds; ``bound``: the rule's upper bound of the PE gap to the control). ``str(...)`` or
    ``.to_string(index=False)`` prints it; ``.to_html`` embeds it.
    """
    from_plot = _names()
    rows = []
    for row in table.to_dict("records"):
        trusted = row.get("model") is not None and not _missing(row.get("model"))
        classes = list(row.get("failing_classes") or [])
        shown = ", ".join(classes[:MAX_FAILING_CLASSES]) + (f" (+{len(classes) - MAX_FAILING_CLASSES} more)"
                                                            if len(classes) > MAX_FAILING_CLASSES else "")
        rows.append({
            "pruner": from_plot.get(str(row["pruner"]), str(row["pruner"])),
            "layer": str(row["layer"]), "cam": str(row["cam"]),
            "trusted ratio": wording.trusted_ratio_text(row).short,
            "model": str(row["model"]) if trusted else "",
            "seeds": "" if _missing(row.get("n_seeds")) else str(int(row["n_seeds"])),
            "PE": _number(row.get("pe"), 3), "bound": _number(row.get("bound"), 3),
            "accuracy drop (points)": _number(_times(row.get("accuracy_drop"), 100), 1),
            "first failure": "never" if _missing(row.get("first_failure")) else f"{row['first_failure']:.2f}",
            "fails on": str(row.get("fails_on") or ""), "failing classes": shown,
            "control PE": _number(row.get("control_pe"), 3), "twin PE": _number(row.get("twin_pe"), 3)})
    return pd.DataFrame(rows, columns=["pruner", "layer", "cam", "trusted ratio", "model", "seeds", "PE", "bound",
                                       "accuracy drop (points)", "first failure", "fails on", "failing classes",
                                       "control PE", "twin PE"])


def _names() -> dict:
    """The pruners' full names: :data:`pescore_nb.plot.PRUNER_NAMES`, the one table (imported here, not
    at the module's import, so that importing this module loads no matplotlib)."""
    from . import plot

    return plot.PRUNER_NAMES


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _times(value, factor: float):
    return None if _missing(value) else float(value) * factor


def _number(value, digits: int) -> str:
    return "" if _missing(value) else f"{float(value):.{digits}f}"


def report(ds: xr.Dataset, path: str | Path = "report.html", *, title: str | None = None,
           n_resamples: int = 1000, heatmap_images: int = 4, overwrite: bool = False, **rule) -> Path:
    """Write the report of ``ds`` to ``path`` (one self-contained HTML file); returns the path.

    ``rule`` keywords (``margin``, ``pe_threshold``, ``max_accuracy_drop``, ...) go to
    :func:`pescore_nb.trust.assess`; ``n_resamples`` to the figures' bootstrap bands;
    ``heatmap_images`` rows in each maps figure (none are drawn for a Dataset without heatmaps).
    An existing file is never replaced unless ``overwrite=True``.
    """
    from . import plot  # matplotlib loads here, only when a report is written

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"The report is an HTML file; give a path ending in .html, got {path.name!r}.")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the report's file path, e.g. {path / 'report.html'}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pescore_nb never replaces a file silently. Choose another "
                              "path, or pass overwrite=True to replace it.")
    if isinstance(heatmap_images, bool) or not isinstance(heatmap_images, int) or heatmap_images < 1:
        raise ValueError(f"heatmap_images must be an integer >= 1 (rows of each heatmap grid), got {heatmap_images!r}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateMapWarning)  # reported once, in the settings
        small = ds.drop_vars([name for name in (schema.HEATMAP, schema.INPUT) if name in ds]).compute()
        verdicts = trust.assess(small, **rule)
        recommendation = trust.recommend(small, **rule) if structure.has_ratios(small) else None
        checks = trust.layer_checks(small)
        figures = _Figures(plot, ds, n_resamples, heatmap_images)
        sections = [_answer(ds, small, verdicts, recommendation, checks, figures),
                    _reading(small, verdicts, checks),
                    _verdicts(verdicts, recommendation, checks), _model_table(small, verdicts, checks),
                    _figures(ds, figures), _per_class(small), _settings(ds, small, verdicts)]
    title = title or f"PE-score report: {model_name(ds)}"
    document = TEMPLATE.format(title=html.escape(title), style=STYLE, body="\n".join(sections),
                               generated=html.escape(f"pescore_nb {__version__}, "
                                                     f"{datetime.datetime.now():%Y-%m-%d %H:%M}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.writing-{os.getpid()}")
    try:
        temporary.write_text(document, encoding="utf-8")
        os.replace(temporary, path)  # a reader sees the old report or the new one, never half of one
    finally:
        temporary.unlink(missing_ok=True)
    return path


def model_name(ds: xr.Dataset) -> str:
    """The reference model's name: the ``reference_name`` attribute (its class, as ``evaluate`` records
    it), else the reference's name in the Dataset."""
    return str(ds.attrs.get("reference_name") or structure.reference(ds))


def dataset_name(ds: xr.Dataset) -> str | None:
    """The name of the data set the test images come from: an attribute of :data:`DATASET_ATTRIBUTES`,
    else such a key in a model's ``provenance``; None when the results name none."""
    for key in DATASET_ATTRIBUTES:
        if ds.attrs.get(key):
            return str(ds.attrs[key])
    if schema.PROVENANCE in ds.coords:
        for text in ds[schema.PROVENANCE].values.tolist():
            found = _parsed(text)
            if isinstance(found, dict):
                name = next((found[key] for key in DATASET_ATTRIBUTES if found.get(key)), None)
                if name:
                    return str(name)
    return None


class _Figures:
    """Draws, numbers and embeds the report's figures in the order they appear: ``"Figure 1. ..."``."""

    def __init__(self, plot, ds: xr.Dataset, n_resamples: int, heatmap_images: int):
        self.plot, self.ds, self.n_resamples, self.heatmap_images = plot, ds, n_resamples, heatmap_images
        self.count = 0
        self.places = [(layer, cam) for layer in ds[schema.LAYER].values.tolist()
                       for cam in ds[schema.CAM].values.tolist()]

    def key(self) -> str:
        """The key figure, at the first layer and CAM method: PE and accuracy vs ratio, or, for candidates
        without ratios, PE against accuracy."""
        layer, cam = self.places[0]
        if structure.has_ratios(self.ds):
            return self.embed(self.plot.pe_vs_ratio(self.ds, n_resamples=self.n_resamples, layer=layer, cam=cam),
                              CAPTIONS["pe_vs_ratio"])
        return self.embed(self.plot.pe_vs_accuracy(self.ds, layer=layer, cam=cam), CAPTIONS["pe_vs_accuracy"])

    def embed(self, fig, caption: str) -> str:
        """``fig`` as a PNG inside a ``<figure>`` with its numbered ``caption``."""
        self.count += 1
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        alt = caption.split(". ")[0]
        return (f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"
                f"<figcaption><b>Figure {self.count}.</b> {html.escape(caption)}</figcaption></figure>")


CAPTIONS = {
    "pe_vs_ratio": "PE-score (top) and accuracy (bottom) as each pruner's ratio grows. The shaded bands are 95 % "
                   "bootstrap intervals over the test images; the dashed lines are the control's PE (or the "
                   "threshold) and the accuracy budget. A PE line that falls while accuracy holds is attention "
                   "drifting where accuracy does not show it.",
    "pe_vs_cost": "PE-score against the share of the reference's MACs and parameters a model keeps: pruners "
                  "compared at equal cost rather than equal ratio; cheaper models lie to the right.",
    "drop_scatter": "Each pruned model at its accuracy drop (across) and PE-score drop (up) from the reference, "
                    "the number beside it its ratio. Points above the dashed diagonal lose more agreement of "
                    "attention than accuracy; left of the dotted line is what accuracy alone would accept. A "
                    "control far outside is drawn at the edge, its marker and label pointing to where it lies.",
    "heatmap_grid": "Where the models look: the CAM of each image (rows) for the reference and each ratio "
                    "(columns), over a grey copy of the picture, each image's PE under its map.",
    "pe_vs_accuracy": "Each model at its accuracy (across) and PE-score (up). Right of the dotted line it keeps "
                      "accuracy within the budget; above the dashed line its PE reaches the control's (or the "
                      "threshold). The rule bounds the PE gap with an interval, so a point near the line can fall "
                      "either way: the verdict table decides.",
    "class_bars": "PE-score of each class for each candidate (whiskers: the spread over the test images, or over "
                  "the seeds). A class far below the others is where attention drifted first.",
    "side_by_side": "Where {model} looks beside the reference: for the first images (rows), the reference's CAM, "
                    "the candidate's (its PE below) and their difference: red where the candidate looks more, blue "
                    "where it looks less.",
}


def _answer(ds: xr.Dataset, small: xr.Dataset, verdicts: xr.Dataset, recommendation: pd.DataFrame | None,
            checks: xr.Dataset, figures: _Figures) -> str:
    """The first section: the question, the model and the data set by name, the verdict table and the key figure."""
    labels = small[schema.LABEL].values
    names = small[schema.CLASS_NAME].values if schema.CLASS_NAME in small.coords else labels
    classes = [str(names[np.flatnonzero(labels == label)[0]]) for label in np.unique(labels)]
    shown = ", ".join(classes[:MAX_CLASS_NAMES]) + (f" and {len(classes) - MAX_CLASS_NAMES} more"
                                                    if len(classes) > MAX_CLASS_NAMES else "")
    images = f"{small.sizes[schema.IMAGE]} test images in {len(classes)} classes ({shown})"
    named = dataset_name(ds)
    dataset = (f"{html.escape(named)}: {html.escape(images)}" if named else
               f"<span class='unnamed'>not named</span>: these results do not record which data set the images "
               f"come from; {html.escape(images)}")
    groups = grouping.mean_over_seeds(small)
    counts = {role: len(structure.models_with_role(groups, role)) for role in (schema.CANDIDATE, schema.CONTROL)}
    model = (f"{html.escape(model_name(ds))}, the reference (unpruned), against {counts[schema.CANDIDATE]} "
             f"candidate{'s' if counts[schema.CANDIDATE] != 1 else ''} and {counts[schema.CONTROL]} "
             f"control{'s' if counts[schema.CONTROL] != 1 else ''}")
    table = (_pruner_table(recommendation, checks, small) if recommendation is not None
             else _candidate_table(verdicts, checks, small))
    return (f"<section id='answer'><h2>The answer</h2><p class='question'>{html.escape(QUESTION)}</p>"
            f"<div class='answer-body'><div><table class='subject'><tr><th>model</th><td>{model}</td></tr>"
            f"<tr><th>data set</th><td>{dataset}</td></tr></table>"
            f"{table}<p class='rule'><b>Rule:</b> {html.escape(wording.rule_sentence(verdicts))}.</p></div>"
            f"{figures.key()}</div></section>")


def _pruner_table(recommendation: pd.DataFrame, checks: xr.Dataset, small: xr.Dataset) -> str:
    """One row per pruner (and layer, CAM method): its trusted ratio by the rule
    (:func:`pescore_nb.wording.trusted_ratio_text`, a flagged layer's included) beside what accuracy
    alone would trust, the layer's state and the seeds."""
    several_cams = recommendation["cam"].nunique() > 1
    rows = []
    for row in recommendation.to_dict("records"):
        where = {schema.LAYER: row["layer"], schema.CAM: row["cam"]}
        words = wording.trusted_ratio_text(row, wording.layer_flag_of(checks, where))
        accurate = f"{row['accuracy_only_ratio']:.2f}" if row["accuracy_only_ratio"] > 0 else "none"
        rows.append([html.escape(_names().get(row["pruner"], row["pruner"])),
                     html.escape(wording.place_name(row["layer"], row["cam"], several_cams)),
                     _verdict_cell(words), html.escape(accurate), _layer_cell(checks.sel(where)),
                     html.escape(_seeds(row["n_seeds"], small))])
    return _table(["pruner", "layer", "trusted ratio by the rule (PE and accuracy)", "accuracy alone would trust",
                   "the layer", "seeds"], rows)


def _candidate_table(verdicts: xr.Dataset, checks: xr.Dataset, small: xr.Dataset) -> str:
    """One row per candidate group (and layer, CAM method), for candidates without pruning ratios: its
    verdict by the rule (:func:`pescore_nb.wording.verdict_text`, a flagged layer's included) beside
    what accuracy alone says, the layer's state and the seeds."""
    judged = verdicts["verdict"].isel({schema.LAYER: 0, schema.CAM: 0}).values != wording.NOT_JUDGED
    several_cams = verdicts.sizes[schema.CAM] > 1
    budget = wording.points(verdicts.attrs["max_accuracy_drop"])
    rows = []
    for group in verdicts[schema.MODEL].values[judged].tolist():
        for layer in verdicts[schema.LAYER].values.tolist():
            for cam in verdicts[schema.CAM].values.tolist():
                where = {schema.LAYER: layer, schema.CAM: cam}
                at = verdicts.sel({schema.MODEL: group, **where})
                within = bool(at["accuracy_ok"])
                accurate = (f"{'within' if within else 'outside'} the budget: accuracy drop "
                            f"{wording.points(float(at['accuracy_drop']))} {'≤' if within else '>'} {budget}")
                rows.append([html.escape(group), html.escape(wording.place_name(layer, cam, several_cams)),
                             _verdict_cell(wording.verdict_text(at, wording.layer_flag_of(checks, where))),
                             html.escape(accurate), _layer_cell(checks.sel(where)),
                             html.escape(_seeds(int(at["n_seeds"]), small))])
    return _table(["candidate", "layer", "verdict by the rule (PE and accuracy)", "accuracy alone", "the layer",
                   "seeds"], rows)


def _verdict_cell(words: wording.VerdictWords) -> str:
    """A verdict's headline in its colour, and why below it."""
    return (f"<td class='verdict' style='color:{words.colour}'><b>{html.escape(words.headline)}</b>"
            f"<br><span class='why'>{html.escape(words.why)}</span></td>")


def _layer_cell(check: xr.Dataset) -> str:
    """A layer's state (:func:`pescore_nb.trust.layer_checks`): no check failed (and which were not
    made), or flagged and why."""
    missing = str(check["not_checked"].item())
    if bool(check["usable"]):
        text = "no check failed" + (f" (not checked without {missing})" if missing else "")
        return f"<td>{html.escape(text)}</td>"
    return (f"<td style='color:{wording.STATE_COLOURS[trust.NOT_ASSESSABLE]}'>"
            f"{html.escape('flagged: ' + str(check['why'].item()))}</td>")


def _seeds(n_seeds: int, small: xr.Dataset) -> str:
    """``"3 (0, 1, 2)"``: how many fine-tuning seeds made a group, and which; ``"1"`` for one."""
    return f"{n_seeds} ({', '.join(map(str, structure.all_seeds(small)))})" if n_seeds > 1 else str(n_seeds)


def _table(header: list[str], rows: list[list[str]], css_class: str = "answer") -> str:
    """An HTML table of ``rows`` (cells already HTML: a ``<td>`` or escaped text) under ``header``."""
    cells = "".join("<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
                    for row in rows)
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    return f"<table class='{css_class}'><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def _reading(small: xr.Dataset, verdicts: xr.Dataset, checks: xr.Dataset) -> str:
    """How to read this: PE and its three terms, the controls and the rule in plain words."""
    try:
        config = PEConfig.from_attrs(small.attrs)
    except KeyError:
        config = PEConfig()
    combined = "SSIM × IoU × Conf" if config.combine == "product" else "the mean of SSIM, IoU and Conf"
    weights = ("each class weighing as many images as it has" if config.class_weights == "support"
               else "each class weighing the same")
    target = "its true label" if config.target == "label" else "the reference's prediction"
    attrs = verdicts.attrs
    budget = f"{wording.points(attrs['max_accuracy_drop'])} of accuracy"
    if attrs["rule"] == "control":
        rule = (f"A candidate is trusted when it loses at most {budget} against the reference and, with "
                f"{attrs['level']:.0%} confidence, its PE lies at most {attrs['margin']:g} below the PE of "
                f"{attrs['control']} fine-tuned with the same seed: pruning moved the maps no further than the "
                "fine-tuning alone does.")
    else:
        rule = (f"A candidate is trusted when it loses at most {budget} against the reference and its PE is at "
                f"least {attrs['pe_threshold']:g} (no {schema.CONTROL_FINETUNE} in the results to compare with).")
    terms = [
        ("PE-score (PE)", f"How far a candidate still looks at the same pixels as the reference, with the same "
                          f"confidence, for each test image: PE = {combined}, with the class activation maps (CAMs: "
                          f"where in the picture a model looks to name a class) of {target}. 1: the same maps "
                          f"and confidence; 0: nothing in common. A model's PE is the mean over each class's "
                          f"images, {weights}."),
        ("SSIM", f"The structural similarity of the two maps (Gaussian window {config.ssim_window}, σ "
                 f"{config.ssim_sigma:g}): the same regions bright in the same shapes. 1: identical."),
        ("IoU", f"Intersection over union of the two maps' hot regions (CAM ≥ {config.iou_threshold:g}): of the "
                "pixels either model relies on, the share both rely on."),
        ("Conf", "1 − |p_reference − p_candidate|, p the softmax probability of the class: 1 when the two are "
                 "equally confident."),
        (schema.CONTROL_FINETUNE, "The reference put through the candidates' fine-tuning without pruning: how "
                                  "far fine-tuning alone moves the maps. The rule compares each candidate with it."),
        (schema.CONTROL_TWIN, "The same architecture and recipe trained from scratch with another seed: how far "
                              "retraining alone moves the maps. A scale, not a pass mark."),
        (f"{schema.RANDOMISED_PREFIX}<layer>", "The reference with its weights re-initialised from the last layer "
                                               "down to that one. Its maps should differ: if they still look like "
                                               "the reference's, the maps ignore the weights and that layer is "
                                               "flagged."),
        ("The rule", f"{rule} A pruner's trusted ratio is the largest ratio up to which every one of its "
                     "models is trusted."),
        *[(f"{wording.STATE_MARKS[state]} {state}", wording.STATE_MEANINGS[state]) for state in trust.VERDICTS],
        ("Accuracy alone", f"What the usual practice trusts: every model whose accuracy drop stays within "
                           f"{budget}, whatever its maps do."),
        ("The layer", wording.layer_rule_sentence(checks.attrs)),
        ("Seeds", wording.seeds_note(small)),
    ]
    coloured = {f"{wording.STATE_MARKS[state]} {state}": f" style='color:{wording.STATE_COLOURS[state]}'"
                for state in trust.VERDICTS}
    body = "".join(f"<dt{coloured.get(name, '')}>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>"
                   for name, text in terms)
    return (f"<section id='reading'><h2>How to read this</h2><dl class='reading'>{body}</dl>"
            "<p>Each figure below has a caption saying what it shows and how to read it.</p></section>")


def _settings(ds: xr.Dataset, small: xr.Dataset, verdicts: xr.Dataset) -> str:
    """The run's settings, the Dataset's attributes (JSON values as nested tables) and each model's
    provenance: what every model shares once, what differs by model in a table."""
    rows = [("reference", structure.reference(small)),
            ("images", f"{small.sizes[schema.IMAGE]} in {len(np.unique(small[schema.LABEL].values))} classes"),
            ("layers", ", ".join(map(str, small[schema.LAYER].values))),
            ("CAM methods", ", ".join(map(str, small[schema.CAM].values))),
            ("controls", ", ".join(structure.controls(grouping.mean_over_seeds(small)))
             or "none (the absolute threshold applies)"),
            ("fine-tuning seeds", wording.seeds_note(small)),
            ("trust rule", wording.rule_sentence(verdicts))]
    if schema.DEGENERATE in small:
        rows.append(("degenerate maps", f"{int(small[schema.DEGENERATE].sum())} of {small[schema.DEGENERATE].size}"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    attributes = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{_value_html(_parsed(value))}</td></tr>"
                         for key, value in sorted(ds.attrs.items()))
    return (f"<section id='settings'><h2>Settings and provenance</h2><table class='settings'>{body}</table>"
            f"<h3>Attributes of the results</h3><table class='settings'>{attributes}</table>"
            f"{_provenance(small)}</section>")


def _parsed(value):
    """``value``, or what it holds when it is a JSON object or list written as a string."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _value_html(value) -> str:
    """A value as people read it: a dict as a table of its keys, a list as a comma-separated line."""
    if isinstance(value, dict):
        if not value:
            return "none"
        rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{_value_html(item)}</td></tr>"
                       for key, item in value.items())
        return f"<table class='nested'>{rows}</table>"
    if isinstance(value, list):
        return ", ".join(_value_html(item) for item in value) or "none"
    if isinstance(value, np.ndarray):
        return html.escape(", ".join(map(str, value.tolist())))
    return html.escape("none" if value is None else str(value))


def _provenance(small: xr.Dataset) -> str:
    """Each model's provenance (JSON, flattened to ``finetune.epochs``-like keys): the values every
    model that has them shares, once; the others in a table by model."""
    if schema.PROVENANCE not in small.coords:
        return ""
    models = small[schema.MODEL].values.astype(str).tolist()
    flat = {model: _flattened(_parsed(text) or {}) for model, text in zip(models, small[schema.PROVENANCE].values)}
    keys = list(dict.fromkeys(key for values in flat.values() for key in values))
    if not keys:
        return "<h3>Provenance of the models</h3><p>No model records a provenance.</p>"
    shared = [key for key in keys if len({json.dumps(values.get(key)) for values in flat.values()
                                          if key in values}) == 1]
    varying = [key for key in keys if key not in shared]
    first = {key: next(values[key] for values in flat.values() if key in values) for key in shared}
    parts = ["<h3>Provenance of the models</h3>",
             "<p>Shared by every model that records it:</p><table class='settings'>"
             + "".join(f"<tr><th>{html.escape(key)}</th><td>{_value_html(first[key])}</td></tr>" for key in shared)
             + "</table>"]
    if varying:
        table = pd.DataFrame([{"model": model, **{key: _plain(flat[model].get(key)) for key in varying}}
                              for model in models])
        parts.append("<p>By model:</p>" + table.to_html(index=False, classes="provenance", escape=True, border=0))
    return "".join(parts)


def _flattened(value, prefix: str = "") -> dict:
    """A nested dict as ``{"finetune.epochs": 1, ...}``; a value that is not a dict as ``{prefix: value}``."""
    if not isinstance(value, dict):
        return {prefix: value} if prefix else {}
    flat: dict[str, object] = {}
    for key, item in value.items():
        flat.update(_flattened(item, f"{prefix}.{key}" if prefix else str(key)) if isinstance(item, dict)
                    else {f"{prefix}.{key}" if prefix else str(key): item})
    return flat


def _plain(value) -> str:
    return "" if value is None else ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _model_table(small: xr.Dataset, verdicts: xr.Dataset, checks: xr.Dataset) -> str:
    """One row per seed group (:func:`pescore_nb.wording.model_table`, the layer flags of ``checks``
    included), verdicts coloured by state, and the twin's PE as a scale below."""
    table = _coloured(wording.model_table(small, verdicts, checks).to_html(
        index=False, classes="models", escape=True, border=0))
    return (f"<section id='models'><h2>Models</h2><p>{html.escape(wording.seeds_note(small))}</p>{table}"
            f"{_paragraph(wording.twin_sentences(verdicts), 'twin')}</section>")


def _verdicts(verdicts: xr.Dataset, recommendation: pd.DataFrame | None, checks: xr.Dataset) -> str:
    rule = html.escape(wording.rule_sentence(verdicts))
    parts = [f"<section id='trust'><h2>Trust verdicts in detail</h2><p class='rule'><b>Rule:</b> {rule}. The "
             "trusted ratio of a pruner is the largest ratio up to which every one of its candidates is trusted "
             "(see <code>pescore_nb.recommend</code>); the reference and the controls are not judged.</p>"]
    if recommendation is None:
        parts.append("<p>No trusted ratios: the candidates have no pruning ratios (the answer above gives each "
                     "candidate's verdict, the model table each one's numbers).</p>")
    else:
        parts.append(_recommendation_table(recommendation, checks))
        parts.append(_paragraph(wording.trusted_twin_sentences(recommendation), "twin"))
    parts.append(_layer_checks(checks))
    parts.append("</section>")
    return "".join(parts)


def _recommendation_table(recommendation: pd.DataFrame, checks: xr.Dataset) -> str:
    """:func:`format_recommendation` as HTML, each trusted ratio in its verdict's colour
    (:func:`pescore_nb.wording.trusted_ratio_text`)."""
    shown = format_recommendation(recommendation)
    colours = [wording.trusted_ratio_text(row, wording.layer_flag_of(checks, {schema.LAYER: row["layer"],
                                                                             schema.CAM: row["cam"]})).colour
               for row in recommendation.to_dict("records")]
    rows = [[f"<td style='color:{colour}'><b>{html.escape(value)}</b></td>" if column == "trusted ratio"
             else html.escape(value) for column, value in zip(shown.columns, values)]
            for colour, values in zip(colours, shown.itertuples(index=False))]
    return _table(list(shown.columns), rows, "trust")


def _layer_checks(checks: xr.Dataset) -> str:
    """Which layers and CAM methods can carry a verdict (:func:`pescore_nb.trust.layer_checks`)."""
    rows = []
    for layer in checks[schema.LAYER].values.tolist():
        for cam in checks[schema.CAM].values.tolist():
            check = checks.sel({schema.LAYER: layer, schema.CAM: cam})
            rows.append({"layer": layer, "CAM": cam, "randomised-copy PE": _number(float(check["randomised_pe"]), 3),
                         "twin PE (scale)": _number(float(check["twin_pe"]), 3),
                         f"{schema.CONTROL_FINETUNE} PE": _number(float(check["control_pe"]), 3),
                         "energy in objects": _number(float(check["energy_in_mask"]), 3),
                         "usable": "yes" if bool(check["usable"]) else f"flagged: {check['why'].item()}",
                         "not checked without": str(check["not_checked"].item())})
    table = pd.DataFrame(rows).to_html(index=False, classes="trust", escape=True, border=0)
    return f"<h3>Layer checks</h3><p>{html.escape(wording.layer_rule_sentence(checks.attrs))}</p>{table}"


def _coloured(table: str) -> str:
    """``table`` (HTML) with each cell that starts with a verdict state given that state's class."""
    states = sorted(STATE_CLASSES, key=len, reverse=True)
    return re.sub(f"<td>({'|'.join(map(re.escape, states))})",
                  lambda found: f"<td class='{STATE_CLASSES[found[1]]}'>{found[1]}", table)


def _paragraph(sentences: list[str], css_class: str) -> str:
    return f"<p class='{css_class}'>{html.escape(' '.join(sentences))}</p>"


def _figures(ds: xr.Dataset, figures: _Figures) -> str:
    """Every figure at every layer and CAM method, each with its numbered caption; the key figure (in
    the answer) is not drawn twice."""
    plot = figures.plot
    parts = ["<section id='figures'><h2>Figures</h2>"]
    shown = grouping.shown_seed(ds)
    if shown is not None:
        seeds = ", ".join(map(str, structure.all_seeds(ds)))
        parts.append(f"<p>Lines and points: the mean over the fine-tuning seeds {seeds}; error bars: the lowest "
                     f"and highest seed; CAMs: seed {shown}'s models.</p>")
    by_ratio = structure.has_ratios(ds)
    for i, (layer, cam) in enumerate(figures.places):
        where = {"layer": layer, "cam": cam}
        parts.append(f"<h3>{html.escape(plot.where_text(layer, cam))}</h3>")
        if i == 0:
            parts.append(f"<p>Figure 1, in the answer above, is this layer's "
                         f"{'PE-score and accuracy vs pruning ratio' if by_ratio else 'PE-score against accuracy'}."
                         "</p>")
        parts.append("<div class='figures'>")
        if by_ratio:
            if i > 0:
                parts.append(figures.embed(plot.pe_vs_ratio(ds, n_resamples=figures.n_resamples, **where),
                                           CAPTIONS["pe_vs_ratio"]))
            parts.append(figures.embed(plot.pe_vs_cost(ds, **where), CAPTIONS["pe_vs_cost"]))
            parts.append(figures.embed(plot.drop_scatter(ds, **where), CAPTIONS["drop_scatter"]))
            for pruner in structure.pruners(ds) if schema.HEATMAP in ds else []:
                parts.append(figures.embed(plot.heatmap_grid(ds, pruner=pruner, images=figures.heatmap_images,
                                                             **where), CAPTIONS["heatmap_grid"]))
        else:
            if i > 0:
                parts.append(figures.embed(plot.pe_vs_accuracy(ds, **where), CAPTIONS["pe_vs_accuracy"]))
            parts.append(figures.embed(plot.class_bars(ds, n_resamples=figures.n_resamples, **where),
                                       CAPTIONS["class_bars"]))
            groups = grouping.seed_view(ds, shown)
            for model in structure.models_with_role(groups, schema.CANDIDATE) if schema.HEATMAP in ds else []:
                parts.append(figures.embed(plot.side_by_side(ds, model, images=figures.heatmap_images, **where),
                                           CAPTIONS["side_by_side"].format(model=model)))
        parts.append("</div>")
    if schema.HEATMAP not in ds:
        parts.append("<p>This Dataset holds no heatmaps, so no maps are shown.</p>")
    parts.append("</section>")
    return "".join(parts)


def _per_class(small: xr.Dataset) -> str:
    averaged = "; a group made with several seeds shows the mean over them" if grouping.several_seeds(small) else ""
    parts = ["<section id='classes'><h2>Per-class results</h2><p>Mean PE of each class; the last column is "
             f"the class-weighted PE (<code>pescore_nb.score</code>){averaged}.</p>"]
    groups = grouping.mean_over_seeds(small)
    per_class, overall = by_class(groups), score(groups)
    for layer in small[schema.LAYER].values.tolist():
        for cam in small[schema.CAM].values.tolist():
            at = per_class.sel({schema.LAYER: layer, schema.CAM: cam})
            table = pd.DataFrame(at.values, index=at[schema.MODEL].values, columns=at[schema.CLASS_NAME].values)
            table["all (weighted)"] = overall.sel({schema.LAYER: layer, schema.CAM: cam}).values
            parts.append(f"<h3>layer {html.escape(str(layer))} · {html.escape(str(cam))}</h3>")
            parts.append(table.to_html(float_format=lambda value: f"{value:.3f}", classes="classes", border=0))
    parts.append("</section>")
    return "".join(parts)


PRINT_FIGURE_HEIGHT = "22cm"  # a figure's image at most this tall in print: with its caption it fits an A4 or Letter page

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem;
       margin-top: 2rem; }
#answer h2 { margin-top: .8rem; }
.question { font-size: 1.15rem; font-weight: 600; margin: .4rem 0 .6rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: 13px; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
table.subject th { color: #555; font-weight: 600; } table.subject { font-size: 14px; margin-bottom: .4rem; }
table.answer { font-size: 14px; } table.answer thead th { border-bottom: 2px solid #ccc; }
table.nested { margin: 0; font-size: 12px; } table.nested th, table.nested td { padding: .1rem .4rem; }
.unnamed { font-weight: 600; font-style: italic; }
dl.reading dt { font-weight: 600; margin-top: .5rem; } dl.reading dd { margin-left: 1.2rem; }
""" + "".join(f"td.{name} {{ color: {wording.STATE_COLOURS[state]}; font-weight: 600; }}\n"
              for state, name in STATE_CLASSES.items()) + """\
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0 0 1rem; max-width: 600px; } figure img { max-width: 100%; height: auto; display: block; }
.answer-body { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 460px); gap: 1.5rem;
               align-items: start; }
@media (max-width: 1000px) { .answer-body { display: block; } }
table.answer .why { font-size: 12px; font-weight: normal; }
figcaption { font-size: 13px; color: #444; margin-top: .3rem; }
.rule { background: #f6f6f6; padding: .5rem .8rem; border-left: 4px solid #009E73; }
.twin { color: #444; }
footer { color: #777; font-size: 12px; margin-top: 3rem; }
@page { margin: 1.5cm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 11px; }
  nav { display: none; }
  .figures { display: block; }
  .answer-body { display: block; }
  figure { display: block; max-width: 100%; break-inside: avoid; page-break-inside: avoid; margin: 0 0 .8rem; }
  figure img { max-height: """ + PRINT_FIGURE_HEIGHT + """; width: auto; max-width: 100%; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  tr { break-inside: avoid; page-break-inside: avoid; }
}
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body><h1>{title}</h1>
<nav><a href="#answer">answer</a> · <a href="#reading">how to read this</a> · <a href="#trust">verdicts in
detail</a> · <a href="#models">models</a> · <a href="#figures">figures</a> · <a href="#classes">per class</a> ·
<a href="#settings">settings and provenance</a></nav>
{body}
<footer>Written by {generated}. PE-score: Pachón, Renza, Ballesteros, "Is My Pruned Model Trustworthy?
PE-Score: A New CAM-Based Evaluation Metric", Big Data Cogn. Comput. 7(2):111, 2023.</footer>
</body></html>
"""
