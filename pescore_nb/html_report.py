"""A shareable report of a results Dataset: one self-contained HTML file (figures embedded as PNG
data, styles inline, nothing fetched from the network) with the run's settings and seeds, the
model table by seed group (the mean over seeds and their range), the trust verdicts in three
states with the rule, what its bound covers and the twin's PE as a scale, the layer checks, the
figures, and the per-class results. Its words are :mod:`pescore_nb.wording`'s, as the CLI's and
the explorer's are.

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
from .scores import DegenerateMapWarning, by_class, score
from .wording import NONE_TRUSTED

FIGURE_DPI = 150  # embedded PNGs: sharp on screen, a few hundred kB each
MAX_FAILING_CLASSES = 4
STATE_CLASSES = {trust.TRUSTED: "trusted", trust.NOT_TRUSTED: "not-trusted", trust.NOT_ASSESSABLE: "not-assessable"}


def format_recommendation(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`pescore_nb.recommend` table as people read it: one row per (pruner, layer, cam), the
    pruner's full name, ratios to two decimals, scores to three, the accuracy drop in points, and
    ``"none trusted"`` / ``"never"`` / ``""`` where the raw table holds None or NaN.

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
            "trusted ratio": f"{row['ratio']:.2f}" if trusted else NONE_TRUSTED,
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
    ``heatmap_images`` rows in each heatmap grid (none are drawn for a Dataset without heatmaps).
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
        sections = [_settings(ds, small, verdicts), _model_table(small, verdicts),
                    _verdicts(verdicts, recommendation, trust.layer_checks(small)),
                    _figures(ds, plot, n_resamples, heatmap_images), _per_class(small)]
    title = title or f"PE-score report: {ds.attrs.get('reference_name', structure.reference(small))}"
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


def _settings(ds: xr.Dataset, small: xr.Dataset, verdicts: xr.Dataset) -> str:
    attrs = dict(ds.attrs)
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
    for key, value in sorted(attrs.items()):
        text = value
        if isinstance(value, str) and value[:1] in "{[":
            try:
                text = json.dumps(json.loads(value), indent=None)
            except ValueError:
                pass
        rows.append((key, str(text)))
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<section id='settings'><h2>Settings of the run</h2><table class='settings'>{body}</table></section>"


def _model_table(small: xr.Dataset, verdicts: xr.Dataset) -> str:
    """One row per seed group (:func:`pescore_nb.wording.model_table`), verdicts coloured by state, and the
    twin's PE as a scale below."""
    table = _coloured(wording.model_table(small, verdicts).to_html(index=False, classes="models", escape=True,
                                                                    border=0))
    return (f"<section id='models'><h2>Models</h2><p>{html.escape(wording.seeds_note(small))}</p>{table}"
            f"{_paragraph(wording.twin_sentences(verdicts), 'twin')}</section>")


def _verdicts(verdicts: xr.Dataset, recommendation: pd.DataFrame | None, checks: xr.Dataset) -> str:
    rule = html.escape(wording.rule_sentence(verdicts))
    parts = [f"<section id='trust'><h2>Trust verdicts</h2><p class='rule'><b>Rule:</b> {rule}. The trusted "
             "ratio of a pruner is the largest ratio up to which every one of its candidates is trusted "
             "(see <code>pescore_nb.recommend</code>); the reference and the controls are not judged.</p>"]
    if recommendation is None:
        parts.append("<p>No trusted ratios: the candidates have no pruning ratios (see the model table for "
                     "each model's verdict).</p>")
    else:
        table = format_recommendation(recommendation).to_html(index=False, classes="trust", escape=True, border=0)
        parts.append(_coloured(table.replace(f"<td>{NONE_TRUSTED}</td>",
                                             f"<td class='{STATE_CLASSES[trust.NOT_TRUSTED]}'>{NONE_TRUSTED}</td>")))
        parts.append(_paragraph(wording.trusted_twin_sentences(recommendation), "twin"))
    parts.append(_layer_checks(checks))
    parts.append("</section>")
    return "".join(parts)


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


def _figures(ds: xr.Dataset, plot, n_resamples: int, heatmap_images: int) -> str:
    if not structure.has_ratios(ds):
        return ("<section id='figures'><h2>Figures</h2><p>The figures walk each pruner's ratios; these "
                "candidates have none.</p></section>")
    parts = ["<section id='figures'><h2>Figures</h2>"]
    shown = grouping.shown_seed(ds)
    if shown is not None:
        seeds = ", ".join(map(str, structure.all_seeds(ds)))
        parts.append(f"<p>Lines and points: the mean over the fine-tuning seeds {seeds}; error bars: the lowest "
                     f"and highest seed; CAMs: seed {shown}'s models.</p>")
    for layer in ds[schema.LAYER].values.tolist():
        for cam in ds[schema.CAM].values.tolist():
            where = {"layer": layer, "cam": cam}
            parts.append(f"<h3>{html.escape(plot.where_text(layer, cam))}</h3><div class='figures'>")
            parts.append(_embed(plot.pe_vs_ratio(ds, n_resamples=n_resamples, **where),
                                "PE-score and accuracy vs pruning ratio"))
            parts.append(_embed(plot.pe_vs_cost(ds, **where), "PE-score at equal cost"))
            parts.append(_embed(plot.drop_scatter(ds, **where), "PE drop vs accuracy drop"))
            for pruner in structure.pruners(ds) if schema.HEATMAP in ds else []:
                parts.append(_embed(plot.heatmap_grid(ds, pruner=pruner, images=heatmap_images, **where),
                                    f"CAMs of {plot.pruner_name(pruner)}"))
            parts.append("</div>")
    if schema.HEATMAP not in ds:
        parts.append("<p>This Dataset holds no heatmaps, so no maps are shown.</p>")
    parts.append("</section>")
    return "".join(parts)


def _embed(fig, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></figure>"


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


STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: 13px; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
table.settings td { font-family: ui-monospace, monospace; word-break: break-all; }
""" + "".join(f"td.{name} {{ color: {wording.STATE_COLOURS[state]}; font-weight: 600; }}\n"
              for state, name in STATE_CLASSES.items()) + """\
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; display: block; }
.rule { background: #f6f6f6; padding: .5rem .8rem; border-left: 4px solid #009E73; }
.twin { color: #444; }
footer { color: #777; font-size: 12px; margin-top: 3rem; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body><h1>{title}</h1>
<nav><a href="#settings">settings</a> · <a href="#models">models</a> · <a href="#trust">trust verdicts</a> ·
<a href="#figures">figures</a> · <a href="#classes">per class</a></nav>
{body}
<footer>Written by {generated}. PE-score: Pachón, Renza, Ballesteros, "Is My Pruned Model Trustworthy?
PE-Score: A New CAM-Based Evaluation Metric", Big Data Cogn. Comput. 7(2):111, 2023.</footer>
</body></html>
"""
