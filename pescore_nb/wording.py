"""The trust vocabulary every view speaks: the CLI, the HTML report and the explorer call these
functions, so they never contradict each other.

A verdict is one of :data:`pescore_nb.trust.VERDICTS` (``"trusted"``, ``"not trusted"``,
``"not assessable"``), or :data:`NOT_JUDGED` for the reference and the controls; each state has
one colour (:data:`STATE_COLOURS`), one mark (:data:`STATE_MARKS`) and one meaning
(:data:`STATE_MEANINGS`). Every view words a verdict with :func:`verdict_text` (a group at a layer)
or :func:`trusted_ratio_text` (a pruner's trusted ratio): a :class:`VerdictWords` holding the
state, its colour, the headline and the sentence, a flagged layer's included. Numbers are named
(:data:`MODEL_PE` vs :data:`IMAGE_PE`), accuracy is in points (:func:`points`), the rule in words
(:func:`rule_words`), what failed too (:func:`failure_text`). Every sentence is computed
from :func:`pescore_nb.trust.assess`, :func:`pescore_nb.trust.recommend` or
:func:`pescore_nb.trust.layer_checks` outputs: what a verdict's bound covers
(:func:`covers_sentence`), the twin's PE as a scale (:func:`twin_sentence`), the seeds
(:func:`seeds_note`) and the layer checks (:func:`layer_rule_sentence`, :func:`layer_check_sentence`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from . import grouping, schema, structure
from .trust import NOT_ASSESSABLE, NOT_TRUSTED, TRUSTED, layer_checks

NOT_JUDGED = ""  # the verdict of the reference and the controls
STATE_COLOURS = {TRUSTED: "#007a4d", NOT_TRUSTED: "#c0392b", NOT_ASSESSABLE: "#9a5b00", NOT_JUDGED: "#666666"}
STATE_MARKS = {TRUSTED: "✔", NOT_TRUSTED: "✘", NOT_ASSESSABLE: "?", NOT_JUDGED: "·"}
STATE_MEANINGS = {TRUSTED: "it passes the rule: its maps stay as close to the reference's as the rule asks, "
                            "within the accuracy budget",
                  NOT_TRUSTED: "it fails the rule, on PE, on accuracy or on both",
                  NOT_ASSESSABLE: "the evidence cannot carry a verdict either way; the sentence says why and "
                                  "what to do",
                  NOT_JUDGED: "the reference and the controls are measured, never judged"}
NONE_TRUSTED = "none trusted"  # a pruner whose smallest ratio already fails: never in the pass colour
SEVERAL_SEEDS_CALL = "prune.sweep(seeds=3)"
MODEL_PE, IMAGE_PE = "model PE (class-weighted)", "image PE"  # the two PEs a view shows, always named
FAILURE_WORDS = {"pe": "PE", "accuracy": "accuracy", "pe+accuracy": "PE and accuracy", NOT_ASSESSABLE: NOT_ASSESSABLE}
FLAGGED_ADVICE = ("judge the candidates at another layer or with another CAM method, one the layer checks do not "
                  "flag (pescore_nb.trust.layer_checks)")


@dataclasses.dataclass(frozen=True)
class VerdictWords:
    """A verdict as every view shows it: ``state`` (one of :data:`pescore_nb.trust.VERDICTS`, or
    :data:`NOT_JUDGED`) decides the ``colour`` and the ``mark``; ``headline`` says it in a few words
    (``"trusted"``, ``"none trusted"``, ``"trusted by the rule, but this layer is flagged"``), ``why``
    gives the named numbers and, on a flagged layer, what it means and what to do; ``short`` is a
    table cell (``"not trusted: PE"``); ``sentence`` is ``"<headline>: <why>"``."""

    state: str
    headline: str
    why: str
    short: str

    @property
    def sentence(self) -> str:
        return f"{self.headline}: {self.why}"

    @property
    def colour(self) -> str:
        return STATE_COLOURS[self.state]

    @property
    def mark(self) -> str:
        return STATE_MARKS[self.state]


def verdict_text(verdict: Mapping, layer_flag: str = "") -> VerdictWords:
    """One group's verdict at one layer and CAM method, in the words and colour of every view.

    ``verdict``: :func:`pescore_nb.trust.assess` at one group, layer and CAM method (its attrs give the
    rule), or a mapping with its ``verdict``, ``reason``, ``role``, ``pe_ok``, ``accuracy_ok``, ``pe``
    (with ``pe_min``, ``pe_max`` and ``n_seeds``: their range too), ``bound``, ``accuracy_drop`` and
    the rule's ``rule``, ``margin``, ``pe_threshold``, ``max_accuracy_drop`` (``control`` optional).
    ``layer_flag``: why :func:`pescore_nb.trust.layer_checks` flags this layer and CAM method (``""``:
    it does not).

    On a flagged layer the maps carry no verdict, so a candidate that passes the rule, or fails it on
    PE alone, is :data:`NOT_ASSESSABLE`, in one sentence that says so and what to do; a candidate over
    the accuracy budget stays :data:`NOT_TRUSTED` (accuracy does not depend on the maps).
    """
    state = str(_value(verdict["verdict"]))
    if state == NOT_JUDGED:
        role = str(_value(verdict["role"]))
        return VerdictWords(NOT_JUDGED, role, f"not judged ({MODEL_PE} {_pe_value(verdict)}): the rule judges "
                            "candidates only", f"({role})")
    besides = _besides(layer_flag)
    if state == NOT_ASSESSABLE:
        reason = str(_value(verdict["reason"]))
        return VerdictWords(NOT_ASSESSABLE, NOT_ASSESSABLE, reason + besides, f"{NOT_ASSESSABLE}: {reason}")
    criteria = _criteria(verdict)
    pe_ok, accuracy_ok = bool(_value(verdict["pe_ok"])), bool(_value(verdict["accuracy_ok"]))
    if layer_flag and accuracy_ok:
        by_rule = TRUSTED if state == TRUSTED else f"{NOT_TRUSTED} on PE"
        return VerdictWords(NOT_ASSESSABLE, f"{by_rule} by the rule, but this layer is flagged",
                            f"{_flag_clause(layer_flag)} ({criteria})",
                            f"{NOT_ASSESSABLE}: layer flagged ({by_rule} by the rule)")
    if state == TRUSTED:
        return VerdictWords(TRUSTED, TRUSTED, criteria, TRUSTED)
    failed = [name for name, ok in (("PE", pe_ok), ("accuracy", accuracy_ok)) if not ok]
    return VerdictWords(NOT_TRUSTED, NOT_TRUSTED, criteria + besides, f"{NOT_TRUSTED}: {' and '.join(failed)}")


def trusted_ratio_text(row: Mapping, layer_flag: str = "") -> VerdictWords:
    """A pruner's largest trusted ratio at one layer and CAM method (a :func:`pescore_nb.recommend` row)
    in the words and colour of every view: ``"trusted up to ratio 0.30"`` (:data:`TRUSTED`),
    :data:`NONE_TRUSTED` (:data:`NOT_TRUSTED`, or :data:`NOT_ASSESSABLE` when the walk stops at a
    not-assessable ratio), and on a flagged layer (``layer_flag``, or the row's ``layer_usable``
    false) a ratio trusted by the rule is :data:`NOT_ASSESSABLE`, saying why and what to do."""
    fails_on = str(row.get("fails_on") or "")
    if fails_on == NOT_ASSESSABLE:
        failure = f"ratio {row['first_failure']:.2f} is {NOT_ASSESSABLE} ({row.get('reason', '')})"
    elif fails_on:
        failure = f"ratio {row['first_failure']:.2f} fails on {failure_text(fails_on)}"
    else:
        failure = "every ratio passes"
    flagged = layer_flag or ("" if row.get("layer_usable", True) else "the layer checks flag it")
    if not isinstance(row.get("model"), str):  # None; NaN where a table turned None into a number
        state = NOT_ASSESSABLE if fails_on == NOT_ASSESSABLE else NOT_TRUSTED
        return VerdictWords(state, NONE_TRUSTED, f"the smallest {failure}{_besides(flagged)}",
                            NONE_TRUSTED + (" (layer flagged)" if flagged else ""))
    up_to = f"trusted up to ratio {row['ratio']:.2f}"
    if flagged:
        return VerdictWords(NOT_ASSESSABLE, f"{up_to}, but this layer is flagged",
                            f"{_flag_clause(flagged)} ({failure})", f"{row['ratio']:.2f} (layer flagged)")
    return VerdictWords(TRUSTED, up_to, failure, f"{row['ratio']:.2f}")


def failure_text(fails_on: str) -> str:
    """What failed first in a :func:`pescore_nb.recommend` walk, in words: ``"pe+accuracy"`` ->
    ``"PE and accuracy"``; ``""`` (nothing failed) -> ``"nothing"``."""
    if not fails_on:
        return "nothing"
    return FAILURE_WORDS.get(fails_on, fails_on)


def rule_words(attrs: Mapping) -> str:
    """The trust rule of :func:`pescore_nb.trust.assess`'s ``attrs`` in words, the accuracy budget in
    points: ``"accuracy drop ≤ 2 points and PE non-inferior to control:finetune of the same seed: ..."``."""
    budget = f"accuracy drop ≤ budget {points(attrs['max_accuracy_drop'])}"
    if attrs["rule"] == "control":
        control = attrs.get("control") or schema.CONTROL_FINETUNE
        return (f"{budget} and PE non-inferior to {control} of the same seed: the {float(attrs['level']):.0%} "
                f"one-sided upper bound of {MODEL_PE} of {control} minus the candidate's ≤ margin "
                f"{float(attrs['margin']):g}")
    fallback = f" (fallback: no {schema.CONTROL_FINETUNE} in the Dataset)" if "fallback" in str(
        attrs.get("rule_text", "")) else ""
    return f"{budget} and {MODEL_PE} ≥ threshold {float(attrs['pe_threshold']):g}{fallback}"


def points(share: float) -> str:
    """An accuracy share in points: ``0.083`` -> ``"8.3 points"``, ``0.02`` -> ``"2 points"``."""
    value = round(float(share) * 100, 1)
    return f"{value:g} point{'' if value == 1 else 's'}"


def _criteria(verdict: Mapping) -> str:
    """The rule's two criteria on one verdict, each with its named numbers and the comparison that decides it."""
    pe = f"{MODEL_PE} {_pe_value(verdict)}"
    if _rule_field(verdict, "rule") == "control":
        control = _rule_field(verdict, "control") or schema.CONTROL_FINETUNE
        ok = bool(_value(verdict["pe_ok"]))
        pe += (f", upper bound of its gap to {control} {float(_value(verdict['bound'])):.3f} "
               f"{'≤' if ok else '>'} margin {float(_rule_field(verdict, 'margin')):g}")
    else:
        threshold = float(_rule_field(verdict, "pe_threshold"))
        pe += f" {'≥' if bool(_value(verdict['pe_ok'])) else '<'} threshold {threshold:g}"
    accuracy = (f"accuracy drop {points(_value(verdict['accuracy_drop']))} "
                f"{'≤' if bool(_value(verdict['accuracy_ok'])) else '>'} budget "
                f"{points(_rule_field(verdict, 'max_accuracy_drop'))}")
    return f"{pe}; {accuracy}"


def _pe_value(verdict: Mapping) -> str:
    """The group's model PE, with several seeds their mean and range (:func:`mean_and_range`)."""
    pe = float(_value(verdict["pe"]))
    if "pe_min" not in verdict or "n_seeds" not in verdict:
        return f"{pe:.3f}"
    return mean_and_range(pe, float(_value(verdict["pe_min"])), float(_value(verdict["pe_max"])),
                          int(_value(verdict["n_seeds"])))


def _rule_field(verdict: Mapping, name: str):
    """A rule parameter of a verdict: its own key, or the attrs of an :func:`pescore_nb.trust.assess` Dataset."""
    if name in verdict:
        return _value(verdict[name])
    return getattr(verdict, "attrs", {}).get(name)


def _flag_clause(why: str) -> str:
    """What a layer flag means and what to do about it."""
    return f"its maps cannot carry a verdict ({why}); {FLAGGED_ADVICE}"


def _besides(why: str) -> str:
    """A layer flag added to a verdict it does not change; "" when the layer is not flagged."""
    return f"; besides, this layer is flagged: {_flag_clause(why)}" if why else ""


def group_verdict_text(verdicts: xr.Dataset, group: str, checks: xr.Dataset | None = None) -> str:
    """The short :func:`verdict_text` of ``group`` over every layer and CAM method of ``verdicts``
    (:func:`pescore_nb.trust.assess`), flagged layers taken from ``checks``
    (:func:`pescore_nb.trust.layer_checks`; None: no layer flagged): one text when they agree, else
    each place's, ``"features.3: trusted; features.7: not trusted: PE"``."""
    at = verdicts.sel({schema.MODEL: group})
    several_cams = verdicts.sizes[schema.CAM] > 1
    texts = {}
    for layer in verdicts[schema.LAYER].values.tolist():
        for cam in verdicts[schema.CAM].values.tolist():
            where = {schema.LAYER: layer, schema.CAM: cam}
            words = verdict_text(at.sel(where), layer_flag_of(checks, where))
            texts[place_name(layer, cam, several_cams)] = words.short
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{where}: {text}" for where, text in texts.items())


def layer_flag_of(checks: xr.Dataset | None, where: Mapping) -> str:
    """Why :func:`pescore_nb.trust.layer_checks` ``checks`` flag the layer and CAM method ``where``; ""
    when they do not (or ``checks`` is None)."""
    if checks is None:
        return ""
    check = checks.sel(where)
    return "" if bool(check["usable"]) else str(check["why"].item())


def place_name(layer: str, cam: str, several_cams: bool) -> str:
    """``"features.3"``, or ``"features.3 · gradcam++"`` when the Dataset has several CAM methods."""
    return f"{layer} · {cam}" if several_cams else str(layer)


def mean_and_range(mean: float, low: float, high: float, n_seeds: int, digits: int = 3) -> str:
    """``"0.712"``, or with several seeds the mean and the range over them, ``"0.712 (0.690–0.731)"``."""
    text = f"{float(mean):.{digits}f}"
    return text if n_seeds < 2 else f"{text} ({float(low):.{digits}f}–{float(high):.{digits}f})"


def covers_sentence(n_seeds: int | Iterable[int], rule: str = "control", seed: int | None = None) -> str:
    """What a verdict's bound covers, for groups of ``n_seeds`` seeds (several counts: one clause each).

    Several seeds: ``"the bound covers the test images and 3 training seeds"``. One seed: the test
    images only, not training randomness (with ``seed``, the one seed picked out of several). The
    absolute rule has no bound.
    """
    counts = sorted({int(n_seeds)} if isinstance(n_seeds, (int, np.integer)) else {int(n) for n in n_seeds})
    if rule == "absolute":
        return "no bound: the absolute rule compares the mean PE with the threshold, with no interval"
    if len(counts) > 1:
        return "; ".join(f"groups of {n} seed{'s' if n > 1 else ''}: {covers_sentence(n, rule, seed)}" for n in counts)
    if counts and counts[0] > 1:
        return f"the bound covers the test images and {counts[0]} training seeds"
    if seed is not None:
        return f"the bound covers the test images only: it is what fine-tuning seed {seed} alone gives"
    return ("the bound covers the test images only, not training randomness: rerun with several seeds "
            f"({SEVERAL_SEEDS_CALL})")


def rule_sentence(verdicts: xr.Dataset, seed: int | None = None) -> str:
    """The rule applied and what its bound covers, for the candidates of ``verdicts``
    (:func:`pescore_nb.trust.assess`): ``"accuracy drop ≤ budget 2 points and ...; the bound covers ..."``
    (:func:`rule_words`)."""
    judged = verdicts["verdict"].isel({schema.LAYER: 0, schema.CAM: 0}).values != NOT_JUDGED
    counts = verdicts["n_seeds"].values[judged]
    text = rule_words(verdicts.attrs)
    return f"{text}; {covers_sentence(counts, verdicts.attrs['rule'], seed)}" if len(counts) else text


def twin_sentence(twin_pe: float, where: str, below: Sequence[str] = (), of: str = "candidate") -> str:
    """The twin's PE as a scale: ``"An independently retrained model (control:twin) scores 0.43 at
    features.16; l2@0.50 scores below it: it has drifted as far as retraining from scratch would."``
    ``below``: the groups (``of``: what they are) whose PE is below the twin's."""
    scale = twin_scale(twin_pe, where)
    if np.isnan(twin_pe):
        return scale
    return f"{scale}; {drifted_clause(below) if below else f'no {of} scores below it'}."


def twin_scale(twin_pe: float, where: str) -> str:
    """``"An independently retrained model (control:twin) scores 0.43 at features.16"``, or, without a
    twin (NaN), that nothing gives that scale."""
    if np.isnan(twin_pe):
        return (f"No independently retrained model ({schema.CONTROL_TWIN}) in the Dataset: nothing shows how "
                "far retraining from scratch alone moves the maps.")
    return f"An independently retrained model ({schema.CONTROL_TWIN}) scores {twin_pe:.2f} at {where}"


def drifted_clause(below: Sequence[str]) -> str:
    """What a PE below the twin's means, for the groups ``below`` (one or more)."""
    if len(below) == 1:
        return f"{below[0]} scores below it: it has drifted as far as retraining from scratch would"
    return (f"{', '.join(below[:-1])} and {below[-1]} score below it: they have drifted as far as retraining "
            "from scratch would")


def twin_sentences(verdicts: xr.Dataset) -> list[str]:
    """:func:`twin_sentence` of each layer and CAM method of ``verdicts`` (:func:`pescore_nb.trust.assess`),
    naming the candidates below the twin; one sentence when there is no twin."""
    judged = verdicts["verdict"].isel({schema.LAYER: 0, schema.CAM: 0}).values != NOT_JUDGED
    candidates = verdicts[schema.MODEL].values[judged].tolist()
    several_cams = verdicts.sizes[schema.CAM] > 1
    sentences = []
    for layer in verdicts[schema.LAYER].values.tolist():
        for cam in verdicts[schema.CAM].values.tolist():
            at = verdicts.sel({schema.LAYER: layer, schema.CAM: cam})
            below = [group for group in candidates if bool(at["below_twin"].sel({schema.MODEL: group}))]
            sentences.append(twin_sentence(float(at["twin_pe"]), place_name(layer, cam, several_cams), below))
    return sentences[:1] if np.isnan(verdicts["twin_pe"].values).all() else sentences


def trusted_twin_sentences(table: pd.DataFrame) -> list[str]:
    """:func:`twin_sentence` of each layer and CAM method of a :func:`pescore_nb.recommend` table,
    naming the trusted groups (each pruner's largest trusted ratio) whose PE is below the twin's."""
    several_cams = table["cam"].nunique() > 1
    sentences = []
    for (layer, cam), rows in table.groupby(["layer", "cam"], sort=False):
        twin_pe = float(rows["twin_pe"].iloc[0])
        below = [str(row.model) for row in rows.itertuples() if row.model is not None and row.pe < twin_pe]
        sentences.append(twin_sentence(twin_pe, place_name(layer, cam, several_cams), below, "trusted candidate"))
    return sentences[:1] if table["twin_pe"].isna().all() else sentences


def seeds_note(ds: xr.Dataset) -> str:
    """Which fine-tuning seeds made the models, and how tables show them."""
    groups = structure.seed_groups(ds)
    several = [group for group, members in groups.items() if len(members) > 1]
    seeds = structure.all_seeds(ds)
    if several:
        return (f"Fine-tuning seeds {', '.join(map(str, seeds))}: {len(several)} groups ({', '.join(several[:3])}"
                f"{', ...' if len(several) > 3 else ''}) were made once per seed; tables show the mean over their "
                "seeds and, in brackets, the lowest and highest.")
    if seeds:
        return f"One fine-tuning seed ({', '.join(map(str, seeds))}): each model was made once."
    return "No fine-tuning seed recorded: each model was made once."


def model_table(ds: xr.Dataset, verdicts: xr.Dataset, checks: xr.Dataset | None = None) -> pd.DataFrame:
    """One row of text per group of ``verdicts`` (:func:`pescore_nb.trust.assess` of ``ds``): model, role,
    pruner, ratio, seeds (only when some group has several), params, MACs (of the group's first model),
    accuracy and model PE at each layer and CAM method (:func:`mean_and_range` over the seeds), verdict
    (:func:`group_verdict_text`, with the layer flags of ``checks``, by default :func:`pescore_nb.trust.layer_checks`
    of ``ds``)."""
    checks = layer_checks(ds) if checks is None else checks
    groups = structure.seed_groups(ds)
    show_seeds = any(len(members) > 1 for members in groups.values())
    accuracy_low, accuracy_high = (structure.by_group(ds[schema.ACCURACY].astype(float), ds, how)
                                   for how in ("min", "max"))
    several_cams = verdicts.sizes[schema.CAM] > 1
    places = [(layer, cam) for layer in verdicts[schema.LAYER].values.tolist()
              for cam in verdicts[schema.CAM].values.tolist()]
    rows = []
    for group in verdicts[schema.MODEL].values.tolist():
        at = verdicts.sel({schema.MODEL: group})
        first = ds[schema.MODEL].sel({schema.MODEL: groups[group][0]}).coords
        n_seeds = int(at["n_seeds"])
        ratio = float(at[schema.RATIO])
        row = {"model": group, "role": str(at[schema.ROLE].values), "pruner": str(at[schema.PRUNER].values),
               "ratio": "" if np.isnan(ratio) else f"{ratio:.2f}"}
        if show_seeds:
            row["seeds"] = str(n_seeds)
        row.update({"params": f"{int(first[schema.PARAMS]):,}" if schema.PARAMS in first else "",
                    "MACs": f"{int(first[schema.MACS]) / 1e6:.2f}M" if schema.MACS in first else "",
                    "accuracy": mean_and_range(at["accuracy"], accuracy_low.sel({schema.MODEL: group}),
                                               accuracy_high.sel({schema.MODEL: group}), n_seeds)})
        for layer, cam in places:
            where = {schema.LAYER: layer, schema.CAM: cam}
            row[f"model PE {place_name(layer, cam, several_cams)}"] = mean_and_range(
                at["pe"].sel(where), at["pe_min"].sel(where), at["pe_max"].sel(where), n_seeds)
        row["verdict"] = group_verdict_text(verdicts, group, checks)
        rows.append(row)
    return pd.DataFrame(rows)


def layer_rule_sentence(attrs: Mapping) -> str:
    """When :func:`pescore_nb.trust.layer_checks` flags a layer, from its ``attrs``."""
    return (f"A layer and CAM method are flagged when the randomised copy's PE is above "
            f"{attrs['randomised_max_pe']:g} (the maps ignore the weights), or the twin's or "
            f"{schema.CONTROL_FINETUNE}'s PE is less than {attrs['min_above_randomised']:g} above the randomised "
            "copy's (maps no more reproducible than a random model's); a check whose control is missing is not "
            "made. The twin's PE is a scale, not a pass mark.")


def layer_check_sentence(check: xr.Dataset, where: str) -> str:
    """One layer and CAM method of :func:`pescore_nb.trust.layer_checks` in words: the controls' PEs,
    the reference's energy in the objects, and whether it is flagged (why) or which checks were not made."""
    values = [(f"randomised-copy PE {{:.2f}}", "randomised_pe"), ("twin PE {:.2f}", "twin_pe"),
              (f"{schema.CONTROL_FINETUNE} PE {{:.2f}}", "control_pe"),
              ("reference energy in the objects {:.0%}", "energy_in_mask")]
    parts = [text.format(float(check[name])) for text, name in values if not np.isnan(float(check[name]))]
    text = f"Layer {where}: {', '.join(parts) or 'no control to check it with'}"
    text += "; no check failed" if bool(check["usable"]) else f"; flagged: {check['why'].item()}"
    missing = str(check["not_checked"].item())
    return f"{text}{f'; not checked without {missing}' if missing else ''}."


def _value(value):
    """A plain Python value from a 0-d DataArray, a numpy scalar or a plain value."""
    return value.item() if hasattr(value, "item") else value
