"""The notebooks in ``notebooks/`` tell the truth, and run.

- Stored without outputs; each runs top to bottom on the CPU in under five minutes, in a fresh
  kernel that imports this repository's pescore_nb.
- Their prose states no number the code computes: a decimal in a markdown cell is a parameter the
  code passes or a default of the trust rule, and no zoo layer name is written anywhere (the
  notebooks read ``model.cam_layers``). Computed numbers are printed by the code.
- Each notebook prints the results its prose relies on as one JSON line starting with ``FACTS:``
  (the explorer's comes after the explorer); the tests below read that line from the executed
  notebook and check every qualitative claim of the prose (quoted above each check). Each shows its
  point: the explorer a trusted and a not-trusted candidate, the quickstart an attention gap, the
  workshop's Exercise 3 a fixed threshold that disagrees with the calibrated rule; every verdict is
  worded by :mod:`pescore_nb.wording` ("none trusted", never "trusted up to 0.00").
- The workshop shows no answers: they live in ``03_workshop_answers.ipynb``, which repeats the
  workshop's set-up and answers every exercise (stretch exercises included), in order; no output
  before the exercises gives one away.

The zoo models the notebooks load (the reference and its twin) are trained, or found in the cache,
once per session, before any notebook's clock starts; a first training takes minutes on 2 cores.
"""
import inspect
import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbclient import NotebookClient

from pescore_nb import structure, trust, wording

REPO = Path(__file__).resolve().parents[1]
EXECUTED = REPO / "build" / "notebooks"  # the executed copies, which tests/test_site.py renders
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NAMES = [path.stem for path in NOTEBOOKS]
LIMIT_SECONDS = 300
EXPECTED = ["01_quickstart", "02_explorer", "03_workshop", "03_workshop_answers", "04_your_model"]
TESTED_ELSEWHERE = {"05_vision_transformers"}  # its own test file checks what it says
CHECK_IMPORT = ("import pescore_nb, pathlib\n"
                "assert pathlib.Path(pescore_nb.__file__).resolve().is_relative_to({repo!r}), pescore_nb.__file__")
FACTS = "FACTS:"
SETUP_MARKER = "(the same in 03_workshop and 03_workshop_answers)"
# Numbers prose may state without the code passing them: the trust rule's defaults.
RULE_DEFAULTS = {structure.MARGIN, structure.PE_THRESHOLD, trust.MIN_PE_ABOVE_RANDOMISED, trust.RANDOMISED_MAX_PE,
                 inspect.signature(trust.attention_gaps).parameters["pe_gap"].default}
RULE_PERCENTAGES = {structure.LEVEL * 100, structure.MAX_ACCURACY_DROP * 100}
TOLERANCE = 1e-9


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)


def sources(notebook: nbformat.NotebookNode, cell_type: str) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == cell_type]


def prose(markdown: str) -> str:
    """``markdown`` without fenced code, inline code and LaTeX: the sentences a reader takes as claims."""
    for pattern in (r"```.*?```", r"`[^`]*`", r"\$\$.*?\$\$", r"\$[^$]*\$"):
        markdown = re.sub(pattern, " ", markdown, flags=re.DOTALL)
    return markdown


# ---------------------------------------------------------------- the stored notebooks
def test_the_notebooks_are_there():
    assert [name for name in NAMES if name not in TESTED_ELSEWHERE] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name} is stored with outputs; clear them (jupyter nbconvert --clear-output --inplace {path})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_prose_states_no_computed_number(path):
    """A decimal in the prose is a parameter the code passes, or a default of the trust rule; a
    percentage is the bootstrap level or the accuracy budget. Results are printed by the code."""
    notebook = nbformat.read(path, as_version=4)
    code = "\n".join(sources(notebook, "code"))
    for markdown in sources(notebook, "markdown"):
        text = prose(markdown)
        for number in re.findall(r"(?<![\w.])\d+\.\d+(?!\.?\w)", text):
            assert re.search(rf"(?<![\w.]){re.escape(number)}(?!\.?\w)", code) or float(number) in RULE_DEFAULTS, \
                f"{path.name} states {number} in its prose; print computed numbers from the code instead:\n{markdown}"
        for number in re.findall(r"(\d+(?:\.\d+)?)\s*%", text):
            assert float(number) in RULE_PERCENTAGES, f"{path.name} states {number} % in its prose:\n{markdown}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_no_zoo_layer_name_is_written(path):
    """The zoo's layers change with its design: the notebooks read ``model.cam_layers``."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        assert not re.search(r"features\.\d+", cell.source), f"{path.name} names a zoo layer:\n{cell.source}"


# ---------------------------------------------------------------- the workshop and its answers
def exercises(notebook: nbformat.NotebookNode) -> list[str]:
    return [source for source in sources(notebook, "markdown") if source.startswith("**Exercise")]


def test_workshop_shows_no_answers():
    """Run All on the workshop shows no answer: no answer cell, hidden or not."""
    notebook = read("03_workshop")
    for cell in notebook.cells:
        assert not cell.source.lstrip().startswith("# Answer"), cell.source
        assert not cell.metadata.get("jupyter", {}).get("source_hidden"), cell.source
        assert "answer" not in cell.metadata.get("tags", []), cell.source
    assert len(exercises(notebook)) >= 3
    assert any("03_workshop_answers.ipynb" in source for source in sources(notebook, "markdown"))


def test_answers_notebook_answers_every_exercise_in_order():
    """The answers notebook restates each exercise of the workshop word for word, each followed
    by its answer: a code cell starting with ``# Answer <n>``."""
    workshop, answers = read("03_workshop"), read("03_workshop_answers")
    assert exercises(answers) == exercises(workshop)
    cells = answers.cells
    positions = [i for i, cell in enumerate(cells)
                 if cell.cell_type == "markdown" and cell.source.startswith("**Exercise")]
    for number, position in enumerate(positions, start=1):
        following = cells[position + 1]
        assert following.cell_type == "code" and following.source.startswith(f"# Answer {number}:"), following.source
    answer_cells = [cell for cell in cells if cell.cell_type == "code" and cell.source.startswith("# Answer")]
    assert len(answer_cells) == len(positions)


def test_answers_notebook_repeats_the_workshop_setup():
    """The answers notebook "repeats the workshop's set-up (the same code, so the same models and results)"."""
    def setup(name):
        return [source for source in sources(read(name), "code") if SETUP_MARKER in source]

    assert setup("03_workshop"), f"the workshop's set-up cells are marked {SETUP_MARKER!r}"
    assert setup("03_workshop_answers") == setup("03_workshop")


# ---------------------------------------------------------------- running them
@pytest.fixture(scope="session")
def trained_zoo():
    """Train (or load) the zoo models the notebooks use, once, outside their time limit."""
    from pescore_nb import zoo
    zoo.load("vgg", "shapes", progress=False)
    zoo.load("vgg", "shapes", seed=1, progress=False)  # the twin of 01 and 03
    zoo.load("vit", "shapes", progress=False)  # 05 and its twin
    zoo.load("vit", "shapes", seed=1, progress=False)


@pytest.fixture(scope="session")
def executed(trained_zoo, tmp_path_factory):
    """``executed(name)``: the notebook run once per session in its own folder (its files and
    temporary folders stay there), as ``.notebook``, ``.seconds`` and ``.facts`` (None without)."""
    runs = {}

    def run(name: str) -> SimpleNamespace:
        if name not in runs:
            folder = tmp_path_factory.mktemp(name)
            notebook = read(name)
            notebook.cells.insert(0, nbformat.v4.new_code_cell(CHECK_IMPORT.format(repo=str(REPO))))
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
                patch.setenv("TMPDIR", str(folder))
                start = time.monotonic()
                NotebookClient(notebook, timeout=LIMIT_SECONDS, kernel_name="python3",
                               resources={"metadata": {"path": str(folder)}}).execute()
                seconds = time.monotonic() - start
            save_executed(notebook, name)
            runs[name] = SimpleNamespace(notebook=notebook, seconds=seconds, facts=facts_of(notebook))
        return runs[name]

    return run


def save_executed(notebook: nbformat.NotebookNode, name: str) -> None:
    """Save the executed notebook, without the import check put before its cells, for the docs."""
    EXECUTED.mkdir(parents=True, exist_ok=True)
    saved = nbformat.from_dict(notebook)
    saved.cells = saved.cells[1:]
    nbformat.write(saved, EXECUTED / f"{name}.ipynb")


def facts_of(notebook: nbformat.NotebookNode) -> dict | None:
    """The JSON printed on the line starting with ``FACTS:``, or None."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                for line in output.text.splitlines():
                    if line.startswith(FACTS):
                        return json.loads(line[len(FACTS):])
    return None


@pytest.mark.slow
@pytest.mark.timeout(LIMIT_SECONDS + 120, func_only=True)  # the zoo fixture's training is not timed
@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_runs_top_to_bottom_in_under_five_minutes(path, executed):
    run = executed(path.stem)
    print(f"{path.name}: {run.seconds:.1f} s")
    assert run.seconds < LIMIT_SECONDS, f"{path.name} took {run.seconds:.0f} s (limit {LIMIT_SECONDS} s)"
    errors = [output for cell in run.notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert not errors, errors
    if path.stem in EXPECTED:
        assert run.facts is not None, f"{path.name} prints no line starting with {FACTS!r}"


def pruned_models(facts: dict) -> list[str]:
    """The candidates by increasing ratio."""
    return sorted((name for name, role in facts["role"].items() if role == "candidate"), key=facts["ratio"].get)


def assert_rule_trusts_no_more_than_accuracy_alone(rows: list[dict]):
    for row in rows:
        assert row["ratio"] <= row["accuracy_only_ratio"] + TOLERANCE, row


GAP_DEFAULTS = inspect.signature(trust.attention_gaps).parameters


def assert_worded_by_the_vocabulary(facts: dict, notebook: nbformat.NotebookNode):
    """Each trusted ratio printed is worded by ``wording.trusted_ratio_text``: a pruner whose smallest
    ratio fails is "none trusted", never in the pass colour, and no output says "up to 0.00"."""
    assert len(facts["verdict_words"]) == len(facts["recommend"])
    for row, said in zip(facts["recommend"], facts["verdict_words"]):
        if row["model"] is None:
            assert said["headline"] == wording.NONE_TRUSTED and said["state"] != trust.TRUSTED, (row, said)
        else:
            assert said["headline"].startswith("trusted up to ratio") and said["state"] == trust.TRUSTED, (row, said)
            assert said["headline"].endswith(f"{row['ratio']:.2f}"), (row, said)
        if "colour" in said:
            assert (said["colour"] == wording.STATE_COLOURS[trust.TRUSTED]) == (said["state"] == trust.TRUSTED)
    for text in outputs_text(notebook.cells):
        assert not re.search(r"up to (ratio )?0\.00\b", text), text


def outputs_text(cells) -> list[str]:
    """The text of every output of ``cells``: streams, and the plain and HTML forms of displays."""
    texts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                texts.extend(str(output.data.get(kind, "")) for kind in ("text/plain", "text/html"))
    return texts


def assert_gaps_are_true(facts: dict):
    """"pairs of pruned models whose accuracies are within 1 point of each other but whose PE differs
    by 0.1 or more", from the accuracies and PEs the notebook printed."""
    accuracy_points, pe_gap = GAP_DEFAULTS["accuracy_points"].default, GAP_DEFAULTS["pe_gap"].default
    for gap in facts["gaps"]:
        a, b, pe = gap["model_a"], gap["model_b"], facts["pe"][gap["layer"]]
        assert facts["role"][a] == facts["role"][b] == "candidate", gap
        assert abs(facts["accuracy"][a] - facts["accuracy"][b]) <= accuracy_points + TOLERANCE, gap
        assert pe[a] - pe[b] >= pe_gap - TOLERANCE, (gap, pe[a], pe[b])


@pytest.mark.slow
def test_quickstart_tells_the_truth(executed):
    facts = executed("01_quickstart").facts
    pruned, accuracy = pruned_models(facts), facts["accuracy"]
    # "each pruned copy is fine-tuned with three seeds, and every result below is a mean over the
    # seeds with its range" (and the control once per seed)
    assert len(facts["seeds"]) == 3
    for name, role in facts["role"].items():
        if role == "candidate" or name == "control:finetune":
            assert facts["n_seeds"][name] == len(facts["seeds"]), name
    for layer, pe in facts["pe"].items():
        # "The reference scores exactly 1 against itself."
        assert pe["reference"] == 1.0
        for name in pruned:
            assert facts["pe_min"][layer][name] - TOLERANCE <= pe[name] <= facts["pe_max"][layer][name] + TOLERANCE
        # "Averaged over the seeds, PE falls as the ratio grows"
        assert all(pe[a] > pe[b] for a, b in zip(pruned, pruned[1:])), (layer, {name: pe[name] for name in pruned})
        # "every pruned model loses more PE than accuracy"
        for name in pruned:
            assert 1 - pe[name] > accuracy["reference"] - accuracy[name], (layer, name, pe[name], accuracy[name])
        # "a pruned model whose PE is below the twin's": the names printed are those below the twin's PE
        for name in pruned:
            assert facts["below_twin"][layer][name] == (pe[name] < facts["twin_pe"][layer] - TOLERANCE), (layer, name)
    # "With several seeds ... it covers the test images drawn and the training seeds"
    for row in facts["recommend"]:
        assert row["n_seeds"] == len(facts["seeds"]) and row["covers"] == trust.COVERS_SEEDS, row
    # "the rule never trusts more [than accuracy alone]"
    assert_rule_trusts_no_more_than_accuracy_alone(facts["recommend"])
    # "the rule trusts **none**" when the smallest ratio fails, in the words every view uses
    assert_worded_by_the_vocabulary(facts, executed("01_quickstart").notebook)
    # "What accuracy does not see": the notebook finds an attention gap between group means
    assert facts["gaps"], "the quickstart finds no attention gap in this run"
    assert_gaps_are_true(facts)
    # "The file gives the same scores (up to the rounding of sums computed in another order)."
    assert facts["reload_difference"] < 1e-6


@pytest.mark.slow
def test_workshop_tells_the_truth(executed):
    facts = executed("03_workshop").facts
    pruned, accuracy_ok, pe_ok = pruned_models(facts), facts["accuracy_ok"], facts["pe_ok"]
    # "you will see pruned models that still answer correctly, but whose class activation maps or
    # confidence moved further from the original's than fine-tuning alone moves them" (the title:
    # "accuracy stays while attention drifts"): within the accuracy budget, PE not non-inferior.
    drifted = [(layer, name) for layer in facts["pe"] for name in pruned
               if accuracy_ok[layer][name] and not pe_ok[layer][name]]
    assert drifted, "no pruned model keeps its accuracy and loses its attention in this run"
    for layer, pe in facts["pe"].items():
        assert pe["reference"] == 1.0
        # "fine-tuning alone moves the maps, training noise moves them too" (section 2, take-aways)
        assert pe["control:finetune"] < 1.0 and pe["control:twin"] < 1.0
    # "the rule never trusts more than accuracy alone" (it asks for the accuracy budget too)
    assert_rule_trusts_no_more_than_accuracy_alone(facts["recommend"])
    assert_worded_by_the_vocabulary(facts, executed("03_workshop").notebook)
    assert_gaps_are_true(facts)
    # "with one fine-tuning seed, as here, it ... covers the test images only"
    for row in facts["recommend"]:
        assert row["n_seeds"] == 1 and row["covers"] == trust.COVERS_IMAGES, row
    # "the reference and the controls are not judged"; every pruned model gets a verdict
    for layer, verdict in facts["verdict"].items():
        for name, role in facts["role"].items():
            assert (verdict[name] in trust.VERDICTS) == (role == "candidate"), (layer, name, verdict[name])
        # "a pruned model whose PE is below the twin's": the names printed are those below the twin's PE
        for name in pruned:
            assert facts["below_twin"][layer][name] == (facts["pe"][layer][name] < facts["twin_pe"][layer] - TOLERANCE)
    # "the pruned model with the lowest PE among those within the accuracy budget, and the three
    # test images it still classifies correctly whose PE fell most: ... the evidence is not the same"
    layer = facts["layers"][-1]
    within = [name for name in pruned if accuracy_ok[layer][name]] or pruned
    assert facts["drifted"] == min(within, key=facts["pe"][layer].get)
    assert len(facts["shown_pe"]) == 3 and all(value < 1.0 for value in facts["shown_pe"])


@pytest.mark.slow
def test_workshop_prints_no_answer_before_its_exercise(executed):
    """Run All shows no answer ahead of its exercise: no output before Exercise 1 lists which models
    pass accuracy but fail PE (``accuracy_ok`` / ``pe_ok``), none before Exercise 3 applies the
    absolute rule."""
    cells = executed("03_workshop").notebook.cells
    first = next(i for i, cell in enumerate(cells) if cell.cell_type == "markdown" and cell.source.startswith("**Exercise"))
    for text in outputs_text(cells[:first]):
        assert "pe_ok" not in text and "accuracy_ok" not in text, text
        assert "absolute" not in text, text


@pytest.mark.slow
def test_explorer_tells_the_truth(executed):
    run = executed("02_explorer")
    facts = run.facts
    candidates = [name for name, role in facts["role"].items() if role == "candidate"]
    # "every pruned copy fine-tuned with three seeds", the control with the same seeds
    for name in candidates + ["control:finetune"]:
        assert facts["n_seeds"][name] == 3, name
    # it opens on a case with a trusted model and a not-trusted one: at the layer and CAM method it
    # opens on, the notebook's own verdicts hold both
    opening = facts["opening"]
    verdicts = facts["verdict"][f"{opening['layer']} {opening['cam']}"]
    states = {verdicts[name] for name in candidates}
    assert trust.TRUSTED in states and trust.NOT_TRUSTED in states, verdicts
    # "The explorer opens on the first pruner's lowest ratio": that group, trusted, in the pass colour
    first = min((name for name in candidates if facts["pruner"][name] == opening["pruner"]), key=facts["ratio"].get)
    assert facts["ratio"][first] == pytest.approx(opening["ratio"])
    assert verdicts[first] == trust.TRUSTED, (first, verdicts)
    state = re.search(r"class='pescore-state' style='color:([^;']+)", opening["verdict_html"])
    assert state and state.group(1) == wording.STATE_COLOURS[trust.TRUSTED], opening["verdict_html"]
    assert_worded_by_the_vocabulary(facts, run.notebook)
    # "A pruner whose smallest ratio already fails is none trusted": at least one, here
    assert any(said["headline"] == wording.NONE_TRUSTED for said in facts["verdict_words"])
    assert_rule_trusts_no_more_than_accuracy_alone(facts["recommend"])


@pytest.mark.slow
def test_workshop_answers_tell_the_truth(executed):
    facts = executed("03_workshop_answers").facts
    # "This notebook repeats the workshop's set-up (the same code, so the same models and results)"
    workshop = executed("03_workshop").facts
    for layer, pe in facts["pe"].items():
        for name, value in pe.items():
            assert value == pytest.approx(workshop["pe"][layer][name], abs=1e-6), (layer, name)
    # Answer 1: "Each model named above keeps its accuracy within the usual 2-point budget, yet its
    # maps moved further ... than fine-tuning alone moves them (bound above the margin)."
    for layer in facts["layers"]:
        for name in facts["pruned"]:
            if facts["accuracy_ok"][layer][name] and not facts["pe_ok"][layer][name]:
                assert facts["accuracy_drop"][name] <= structure.MAX_ACCURACY_DROP + TOLERANCE
                assert facts["bound"][layer][name] > facts["margin"]
    # Answer 3: "A wider margin can only trust the same ratio or a larger one"
    narrow, wide = facts["trusted"]["calibrated, margin 0.05"], facts["trusted"]["calibrated, margin 0.1"]
    for a, b in zip(narrow, wide):
        assert (a["pruner"], a["layer"]) == (b["pruner"], b["layer"])
        assert b["calibrated, margin 0.1"] >= a["calibrated, margin 0.05"] - TOLERANCE, (a, b)
    # Answer 3: "Here the fine-tuning moves even the unpruned model (control:finetune) below the
    # threshold, so the absolute rule rejects pruned models ... and the calibrated rule trusts them":
    # on the models the set-up makes, the fixed threshold and the calibrated rule disagree
    absolute = facts["trusted"]["absolute, PE >= 0.8"]
    for layer, control_pe in facts["control_pe"].items():
        assert control_pe < structure.PE_THRESHOLD, (layer, control_pe)
    disagree = [[a["pruner"], a["layer"]] for a, b in zip(narrow, absolute)
                if abs(a["calibrated, margin 0.05"] - b["absolute, PE >= 0.8"]) > TOLERANCE]
    assert facts["disagree"] == disagree and disagree, (narrow, absolute)
    assert any(a["calibrated, margin 0.05"] > b["absolute, PE >= 0.8"] for a, b in zip(narrow, absolute))
    # Answer 5: the set-up's Grad-CAM++ walk beside two more CAM methods on the same models and images
    walks = {row["cam"]: row for row in facts["cam_walks"]}
    assert set(walks) == {"gradcam++", "gradcam", "layercam"}
    assert walks["gradcam++"]["ratio"] == pytest.approx(next(row["ratio"] for row in workshop["recommend"]
                                                              if row["pruner"] == "unstructured"))
    for layer, by_cam in facts["randomised_pe"].items():
        assert set(by_cam) == set(walks), layer
    # Answer 6: the smaller L2 ratio and its control made again by distillation: other models
    smaller_l2 = min((name for name in workshop["role"] if workshop["pruner"][name] == "l2"), key=workshop["ratio"].get)
    assert sorted(facts["distilled"]) == sorted([smaller_l2, "control:finetune"])
    for layer, pe in facts["distilled_pe"].items():
        assert any(abs(pe[name] - facts["pe"][layer][name]) > TOLERANCE for name in facts["distilled"]), layer
    # Answer 4: the set-up's seed alone gives the workshop's verdict; "a bootstrap over the test images
    # only" for each seed alone; the seed-aware bound "covers the test images and the training seeds"
    setup = facts["one_seed"]["seed 0 (set-up)"]
    assert setup and all(row["pruner"] == "unstructured" for row in setup)
    assert [row["ratio"] for row in setup] == [row["ratio"] for row in workshop["recommend"]
                                                if row["pruner"] == "unstructured"]
    assert len(facts["new_seeds"]) == 2 and 0 not in facts["new_seeds"]
    for label, rows in facts["one_seed"].items():
        for row in rows:
            assert row["n_seeds"] == 1 and row["covers"] == trust.COVERS_IMAGES, (label, row)
    for row in facts["together"]:
        assert row["n_seeds"] == len(facts["new_seeds"]) and row["covers"] == trust.COVERS_SEEDS, row
    # the printed flips are the walks whose one-seed trusted ratios differ
    ratios = {}
    for rows in facts["one_seed"].values():
        for row in rows:
            ratios.setdefault((row["pruner"], row["layer"]), set()).add(row["ratio"])
    assert sorted(map(tuple, facts["flips"])) == sorted(walk for walk, found in ratios.items() if len(found) > 1)
    # "the columns per seed": one gap per seed; the seed-aware bound "lies above the mean gap over the seeds"
    for group, gaps in facts["seed_gaps"].items():
        assert len(gaps) == len(facts["new_seeds"]), group
        assert facts["mean_gap"][group] == pytest.approx(sum(gaps) / len(gaps), abs=1e-9)
        assert facts["seed_bound"][group] >= facts["mean_gap"][group] - 1e-6, group


@pytest.mark.slow
def test_your_model_notebook_tells_the_truth(executed):
    facts = executed("04_your_model").facts
    # "the state_dict is saved and loaded into a fresh model"
    assert facts["loaded_as_saved"] is True
    # "l1 removes whole channels ..., so it lowers the MACs; unstructured zeroes single weights, so
    # the dense computation keeps its MACs"
    reference_macs = facts["macs"]["reference"]
    for name, pruner in facts["pruner"].items():
        if pruner == "l1":
            assert facts["macs"][name] < reference_macs, name
        if pruner == "unstructured":
            assert facts["macs"][name] == reference_macs, name
    # "without it, it falls back to an absolute threshold and says so in its rule column"
    assert "fallback" in facts["rule"]
