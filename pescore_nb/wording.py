"""The trust vocabulary every view speaks: the CLI, the HTML report and the explorer call these
functions, so they never contradict each other.

A verdict is one of :data:`pescore_nb.trust.VERDICTS` (``"trusted"``, ``"not trusted"``,
``"not assessable"``), or :data:`NOT_JUDGED` for the reference and the controls; each state has
a colour (:data:`STATE_COLOURS`) and a mark (:data:`STATE_MARKS`). Every sentence is computed
from :func:`pescore_nb.trust.assess`, :func:`pescore_nb.trust.recommend` or
:func:`pescore_nb.trust.layer_checks` outputs: what a verdict's bound covers
(:func:`covers_sentence`), the twin's PE as a scale (:func:`twin_sentence`), the seeds
(:func:`seeds_note`) and the layer checks (:func:`layer_rule_sentence`, :func:`layer_check_sentence`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from . import grouping, schema, structure
from .trust import NOT_ASSESSABLE, NOT_TRUSTED, TRUSTED

NOT_JUDGED = ""  # the verdict of the reference and the controls
STATE_COLOURS = {TRUSTED: "#007a4d", NOT_TRUSTED: "#c0392b", NOT_ASSESSABLE: "#9a5b00", NOT_JUDGED: "#666666"}
STATE_MARKS = {TRUSTED: "✔", NOT_TRUSTED: "✘", NOT_ASSESSABLE: "?", NOT_JUDGED: "·"}
NONE_TRUSTED = "none trusted"
SEVERAL_SEEDS_CALL = "prune.sweep(seeds=3)"


def verdict_text(verdict: Mapping, short: bool = False) -> str:
    """One verdict in words: ``"trusted"``, ``"not trusted: <reason>"`` (``short``: the criteria that
    failed, ``"not trusted: PE+accuracy"``), ``"not assessable: <reason>"``, or ``"(reference)"`` /
    ``"(control)"``, which are not judged.

    ``verdict``: :func:`pescore_nb.trust.assess` at one group, layer and CAM method, or a mapping with
    its ``verdict``, ``reason``, ``pe_ok``, ``accuracy_ok`` and ``role``.
    """
    state = str(_value(verdict["verdict"]))
    if state == NOT_JUDGED:
        return f"({_value(verdict['role'])})"
    if state == TRUSTED:
        return TRUSTED
    if state == NOT_TRUSTED and short:
        failed = [name for name, key in (("PE", "pe_ok"), ("accuracy", "accuracy_ok"))
                  if not bool(_value(verdict[key]))]
        return f"{NOT_TRUSTED}: {'+'.join(failed)}"
    return f"{state}: {_value(verdict['reason'])}"


def group_verdict_text(verdicts: xr.Dataset, group: str) -> str:
    """The short :func:`verdict_text` of ``group`` over every layer and CAM method of ``verdicts``
    (:func:`pescore_nb.trust.assess`): one text when they agree, else each place's,
    ``"features.3: trusted; features.7: not trusted: PE"``."""
    at = verdicts.sel({schema.MODEL: group})
    several_cams = verdicts.sizes[schema.CAM] > 1
    texts = {place_name(layer, cam, several_cams): verdict_text(at.sel({schema.LAYER: layer, schema.CAM: cam}), True)
             for layer in verdicts[schema.LAYER].values.tolist() for cam in verdicts[schema.CAM].values.tolist()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{where}: {text}" for where, text in texts.items())


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
    (:func:`pescore_nb.trust.assess`): ``"accuracy drop <= 0.02 and ...; the bound covers ..."``."""
    judged = verdicts["verdict"].isel({schema.LAYER: 0, schema.CAM: 0}).values != NOT_JUDGED
    counts = verdicts["n_seeds"].values[judged]
    text = str(verdicts.attrs["rule_text"])
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


def model_table(ds: xr.Dataset, verdicts: xr.Dataset) -> pd.DataFrame:
    """One row of text per group of ``verdicts`` (:func:`pescore_nb.trust.assess` of ``ds``): model, role,
    pruner, ratio, seeds (only when some group has several), params, MACs (of the group's first model),
    accuracy and PE at each layer and CAM method (:func:`mean_and_range` over the seeds), verdict
    (:func:`group_verdict_text`)."""
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
            row[f"PE {place_name(layer, cam, several_cams)}"] = mean_and_range(
                at["pe"].sel(where), at["pe_min"].sel(where), at["pe_max"].sel(where), n_seeds)
        row["verdict"] = group_verdict_text(verdicts, group)
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
