"""The pages of the site that the code defines, generated at build time so they never drift from it.

Written under ``docs/_generated/`` (ignored by git) when the build starts:

- ``api/<name>.rst``: one page per name of ``pescore_nb.__all__`` and per public module of
  :data:`API_MODULES`, from their docstrings; an exported name without a docstring is a warning
  (an error under ``-W``).
- ``cli.md``: every command and option of ``pescore``, from the parser ``pescore_nb.cli`` builds.
- ``yaml.md``: every key of a ``pescore run`` config, from :data:`pescore_nb.runconfig.KEYS` (the
  table the reader checks configs against), the fields of ``PEConfig`` and ``prune.Finetune``.
- ``peconfig.md`` and ``sp2psconfig.md``: every field of the configs with its type, default and
  the line of the class docstring that describes it.
- ``schema.md``: the variables, coordinates and attributes of a results Dataset, read from one that
  :func:`pescore_nb.evaluate` makes here on a tiny untrained model, described by
  :data:`pescore_nb.schema.DESCRIPTIONS`.
- ``demo.md`` and ``gallery.md``: the demo's verdict table and figures from the committed output in
  ``docs/demo/`` (written by ``docs/demo_output.py``), with the code that makes each figure.
- ``notebooks/*.ipynb``: the notebooks to render. ``pescore_notebooks`` (environment variable
  ``PESCORE_DOCS_NOTEBOOKS``) says which: ``"execute"`` (``make docs``: the stored notebooks, run
  by the build), ``"executed"`` (the copies ``tests/test_notebooks.py`` saved in ``build/notebooks``,
  rendered as they are) or ``"stored"`` (the stored notebooks without outputs, rendered as they are).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable

from sphinx.application import Sphinx
from sphinx.util import logging

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
GENERATED = DOCS / "_generated"
DEMO = DOCS / "demo"
SUMMARY = DEMO / "summary.json"
EXECUTED = REPO / "build" / "notebooks"  # where tests/test_notebooks.py saves the executed notebooks
NOTEBOOK_MODES = ("execute", "executed", "stored")
API_MODULES = ("prune", "controls", "trust", "stats", "plot", "structure", "schema", "layouts", "data", "zoo")
logger = logging.getLogger(__name__)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("pescore_notebooks", "execute", "env")
    app.connect("config-inited", generate)
    return {"version": "1", "parallel_read_safe": True}


def generate(app: Sphinx, config: Any) -> None:
    """Write every generated page; a missing docstring or description is a warning naming it."""
    if config.pescore_notebooks not in NOTEBOOK_MODES:
        raise ValueError(f"PESCORE_DOCS_NOTEBOOKS={config.pescore_notebooks!r}; use one of {NOTEBOOK_MODES}.")
    GENERATED.mkdir(exist_ok=True)
    write("api.md", api_pages())
    write("cli.md", cli_reference())
    write("yaml.md", yaml_reference())
    write("peconfig.md", config_table("PEConfig"))
    write("sp2psconfig.md", config_table("Sp2PSConfig"))
    write("schema.md", schema_tables())
    summary = json.loads(SUMMARY.read_text()) if SUMMARY.is_file() else None
    write("demo.md", demo_table(summary))
    write("gallery.md", gallery(summary))
    copy_notebooks(config.pescore_notebooks)


def write(name: str, text: str) -> None:
    """Write ``text`` to ``_generated/name`` unless it already holds it (incremental builds stay quick)."""
    path = GENERATED / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table; ``|`` in cells escaped."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)]) + "\n"


def code(text: str) -> str:
    """Inline code of ``text``, with a fence long enough for the backticks in it."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if text else ""


# ---------------------------------------------------------------- the API reference
def api_pages() -> str:
    """One page per exported name and per module of :data:`API_MODULES`; returns the index's toctrees."""
    import pescore_nb

    for name in pescore_nb.__all__:
        obj = getattr(pescore_nb, name)
        check_documented(f"pescore_nb.{name}", obj)
        directive = "autoclass" if inspect.isclass(obj) else "autofunction"
        options = "   :members:\n" if inspect.isclass(obj) else ""
        write(f"api/{name}.rst", f"{name}\n{'=' * len(name)}\n\n.. currentmodule:: pescore_nb\n\n"
                                 f".. {directive}:: {name}\n{options}")
    for module in API_MODULES:
        full = f"pescore_nb.{module}"
        check_documented(full, importlib.import_module(full))
        write(f"api/{module}.rst", f"{full}\n{'=' * len(full)}\n\n.. automodule:: {full}\n   :members:\n")
    names = "\n".join(f"_generated/api/{name}" for name in pescore_nb.__all__)
    modules = "\n".join(f"_generated/api/{module}" for module in API_MODULES)
    return (f"```{{toctree}}\n:caption: pescore_nb\n:maxdepth: 1\n\n{names}\n```\n\n"
            f"```{{toctree}}\n:caption: Modules\n:maxdepth: 1\n\n{modules}\n```\n")


def check_documented(name: str, obj: Any) -> None:
    """Warn about ``obj`` without a docstring and, for a class or module, about its public members
    defined in pescore_nb without one."""
    if not inspect.getdoc(obj):
        logger.warning(f"{name} has no docstring; the API reference shows docstrings: write one.")
    if not (inspect.isclass(obj) or inspect.ismodule(obj)):
        return
    exported = getattr(obj, "__all__", None)
    for member_name, member in vars(obj).items():
        if member_name.startswith("_") or (exported is not None and member_name not in exported):
            continue
        if inspect.ismodule(obj) and getattr(member, "__module__", None) != obj.__name__:
            continue  # imported from elsewhere: documented there
        if (inspect.isfunction(member) or inspect.isclass(member)) and not inspect.getdoc(member):
            logger.warning(f"{name}.{member_name} has no docstring; the API reference shows docstrings: write one.")


# ---------------------------------------------------------------- the command line
def cli_reference() -> str:
    """Each command's ``--help`` and a table of its arguments, from ``pescore_nb.cli``'s parser."""
    from pescore_nb import cli

    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal's width
    parser = cli._parser()
    sections = [command_section(parser, "pescore", "##")]
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for name, subparser in action.choices.items():
            sections.append(command_section(subparser, f"pescore {name}", "###"))
    return "\n".join(sections)


def command_section(parser: argparse.ArgumentParser, title: str, level: str) -> str:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        names = ", ".join(action.option_strings) or action.dest
        default = "" if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings \
            else repr(action.default)
        rows.append([code(names), code(default), action.help or ""])
    body = f"{level} `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```\n\n"
    return body + (table(["argument", "default", "what it does"], rows) if rows else "")


# ---------------------------------------------------------------- the YAML config
YAML_SECTIONS = (
    ("", "The top level"),
    ("model", "A model: `reference`, `twin`, each of `candidates`"),
    ("candidate", "A candidate's extra keys (under `candidates.NAME`)"),
    ("data", "Data: `data` and `prune.data`"),
    ("prune", "`prune`: a sweep of the reference"),
    ("prune.finetune", "`prune.finetune`: the fine-tuning recipe"),
    ("recommend", "`recommend`: the trust rule's thresholds"),
)


def yaml_reference() -> str:
    """Every key of :data:`pescore_nb.runconfig.KEYS` by section, and ``pe``'s keys from PEConfig."""
    from pescore_nb import prune, runconfig
    from pescore_nb.metrics import PEConfig

    finetune_defaults = {field.name: field.default for field in dataclasses.fields(prune.Finetune)}
    listed = {key.section for key in runconfig.KEYS}
    unknown = listed - {section for section, _ in YAML_SECTIONS}
    if unknown:
        logger.warning(f"runconfig.KEYS has sections {sorted(unknown)} that the YAML reference does not list; "
                       "add them to YAML_SECTIONS in docs/_ext/pescore_docs.py.")
    parts = []
    for section, title in YAML_SECTIONS:
        rows = []
        for key in (key for key in runconfig.KEYS if key.section == section):
            default = key.default
            if section == "prune.finetune":
                default = yaml_value(finetune_defaults[key.name])
            rows.append([code(key.name), key.takes, default, key.source])
        header = ["key", "what it takes", "when left out"] + (["model from"] if section == "model" else [])
        rows = [row if section == "model" else row[:3] for row in rows]
        parts.append(f"## {title}\n\n" + table(header, rows))
    pe_rows = [[code(field.name), code(yaml_value(field.default))] for field in dataclasses.fields(PEConfig)]
    parts.append("## `pe`: the metric's parameters\n\nAny field of `PEConfig` (see [the metric](metric.md)):\n\n"
                 + table(["key", "when left out"], pe_rows))
    return "\n".join(parts)


def yaml_value(value: Any) -> str:
    """A default as it would be written in YAML."""
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


# ---------------------------------------------------------------- the configs of the metric
def config_table(name: str) -> str:
    """Every field of ``PEConfig`` or ``Sp2PSConfig``: type, default and its line of the class docstring."""
    import pescore_nb

    config = getattr(pescore_nb, name)
    described = field_descriptions(inspect.getdoc(config) or "")
    rows = []
    for field in dataclasses.fields(config):
        if field.name not in described:
            logger.warning(f"{name}.{field.name} is not described in {name}'s docstring "
                           "('field: what it does'); the metric page lists every field.")
        rows.append([code(field.name), code(str(field.type)), code(repr(field.default)),
                     myst_roles(described.get(field.name, ""))])
    return table(["field", "type", "default", "what it sets"], rows)


def myst_roles(text: str) -> str:
    """reST roles (``:class:`X` ``) in a docstring's text as MyST roles (``{py:class}`X` ``)."""
    return re.sub(r":(\w+):`", r"{py:\1}`", text)


def field_descriptions(docstring: str) -> dict[str, str]:
    """``{field: description}`` from docstring lines ``- name: text`` or ``- a, b: text`` (a bullet
    list; indented lines continue the text)."""
    found: dict[str, str] = {}
    names: list[str] = []
    for line in docstring.splitlines():
        match = re.match(r"^- (\w+(?:, \w+)*): (.+)$", line)
        if match:
            names = match.group(1).split(", ")
            for name in names:
                found[name] = match.group(2).strip()
        elif line.startswith(" ") and names and line.strip():
            for name in names:
                found[name] += " " + line.strip()
        else:
            names = []
    return found


# ---------------------------------------------------------------- the results Dataset
def schema_tables() -> str:
    """Variables, coordinates and attributes of a Dataset ``evaluate`` makes, each described by
    ``schema.DESCRIPTIONS``: a warning names any without a description."""
    import pescore_nb
    from pescore_nb import schema

    ds = example_results()
    described = schema.DESCRIPTIONS
    for name in [*ds.data_vars, *ds.coords, *ds.attrs]:
        if name not in described:
            logger.warning(f"the results Dataset's {name!r} has no entry in pescore_nb.schema.DESCRIPTIONS.")

    def rows(names: Iterable[Any], of: Any) -> list[list[str]]:
        return [[code(str(name)), code(", ".join(map(str, of[name].dims))), code(str(of[name].dtype)),
                 described.get(str(name), "")] for name in names]

    header = ["name", "dims", "dtype", "what it holds"]
    attrs = [[code(name), described.get(name, "")] for name in ds.attrs]
    version = ds.attrs[schema.SCHEMA_VERSION_ATTRIBUTE]
    return (f"Made by pescore_nb {pescore_nb.__version__}, schema version {version}.\n\n"
            "### Variables\n\n" + table(header, rows(ds.data_vars, ds))
            + "\n### Coordinates\n\n" + table(header, rows(ds.coords, ds))
            + "\n### Attributes\n\n" + table(["name", "what it holds"], attrs))


def example_results():
    """A results Dataset of every kind of variable: an untrained small VGG, one pruned copy and a
    randomised control, four ``shapes`` images with masks, Sp2PS on. It takes a few seconds."""
    import torch

    import pescore_nb
    from pescore_nb import controls, data, prune, zoo

    torch.manual_seed(0)
    reference = zoo.VGG(num_classes=6, config=(8, "M", 8)).eval()
    images = data.shapes(4, size=32, split="test")
    layer = reference.cam_layers[0]
    candidates = prune.sweep(reference, images[0][0][None], [0.5], pruner="l2", controls=False)
    candidates["control:randomised@" + layer] = controls.randomised(reference, layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model's maps may be degenerate: the names are what counts
        return pescore_nb.evaluate(reference, candidates, images, layers=layer, progress=False,
                                   sp2ps_config=pescore_nb.Sp2PSConfig())


# ---------------------------------------------------------------- the demo's output
def demo_table(summary: dict | None) -> str:
    """The demo's largest trusted ratios beside what accuracy alone would trust, from ``summary.json``."""
    if summary is None:
        return ("```{note}\nNo output of `pescore demo` is committed yet: after `make demo`, `make docs-demo` "
                "writes `docs/demo/` (the verdicts, figures and versions) for this page.\n```\n")
    rows = [[row["pruner"], code(row["layer"]), row["cam"],
             f"{row['ratio']:.2f}" if row["model"] is not None else "none trusted",
             f"{row['accuracy_only_ratio']:.2f}",
             "never" if row["first_failure"] is None else f"{row['first_failure']:.2f} ({row['fails_on']})"]
            for row in summary["recommend"]]
    seeds = ", ".join(map(str, summary["seeds"])) or "none"
    return (f"`{summary['command']}` with pescore_nb {summary['versions']['pescore_nb']} "
            f"(torch {summary['versions']['torch']}), run on {summary['date']}: {summary['images']} test images, "
            f"fine-tuning seeds {seeds}. Rule: {summary['rule']}.\n\n"
            + table(["pruner", "layer", "CAM", "largest trusted ratio", "accuracy alone would trust",
                     "first failure"], rows))


def gallery(summary: dict | None) -> str:
    """Each figure ``docs/demo_output.py`` draws from the demo's results, with the code that draws it."""
    if summary is None:
        return demo_table(None)
    parts = [f"Each figure is drawn from the demo's `results.nc`, loaded with\n\n```python\n{summary['load']}\n```\n"]
    for figure in summary["figures"]:
        parts.append(f"## {figure['title']}\n\n```python\n{figure['code']}\n```\n\n"
                     f"![{figure['title']}](demo/{figure['file']})\n")  # relative to gallery.md
    return "\n".join(parts)


# ---------------------------------------------------------------- the notebooks
def copy_notebooks(mode: str) -> None:
    """Copy the notebooks the build renders to ``_generated/notebooks`` (see the module docstring)."""
    folder = GENERATED / "notebooks"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for stored in sorted((REPO / "notebooks").glob("*.ipynb")):
        source = stored
        if mode == "executed":
            source = EXECUTED / stored.name
            if not is_executed_copy(source, stored):
                raise FileNotFoundError(f"{source} is not an executed copy of {stored}: run "
                                        "`pytest tests/test_notebooks.py` first, or build with "
                                        "PESCORE_DOCS_NOTEBOOKS=execute (or stored).")
        shutil.copyfile(source, folder / stored.name)


def is_executed_copy(copy: Path, stored: Path) -> bool:
    """Whether ``copy`` holds the cells of ``stored`` (the same sources, in order) with outputs."""
    if not copy.is_file():
        return False
    ran, original = json.loads(copy.read_text()), json.loads(stored.read_text())

    def sources(notebook: dict) -> list[str]:
        return ["".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                for cell in notebook["cells"]]

    has_outputs = any(cell.get("outputs") for cell in ran["cells"] if cell["cell_type"] == "code")
    return sources(ran) == sources(original) and has_outputs
