"""Sphinx configuration of the pescore_nb site: ``make docs`` builds it into docs/_build/html.

Sphinx with the PyData theme and MyST-NB, as xarray and the other PyData libraries do: pages in
Markdown, the API reference from docstrings (autodoc), notebooks rendered with their outputs. The
pages the code defines (API, CLI, YAML, configs, schema, the demo's table and gallery) are written
by ``_ext/pescore_docs.py`` when the build starts. Nothing is fetched from the network.
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import pescore_nb  # noqa: E402  (the installed package: `make docs` uses .venv)

project = "pescore_nb"
author = "pescore_nb contributors"
copyright = "pescore_nb contributors, MIT licence"
release = version = pescore_nb.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "myst_nb", "pescore_docs"]
# _generated/*.md are included by the pages (api.md, cli.md, ...), not pages of their own
exclude_patterns = ["_build", "_ext", "_generated/*.md", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext", ".ipynb": "myst-nb"}
suppress_warnings = ["myst.header"]  # notebooks may start below heading level 1
smartquotes = False  # names and code-like text stay exactly as the code spells them

# Markdown
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks: "execute" runs the stored ones; "executed" and "stored" render copies as they are
pescore_notebooks = os.environ.get("PESCORE_DOCS_NOTEBOOKS", "execute")
nb_execution_mode = "force" if pescore_notebooks == "execute" else "off"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_in_temp = True  # files the notebooks write stay out of docs/
nb_ipywidgets_js = {}  # widgets need a live kernel; their text form is shown, and nothing is fetched

# API reference
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# HTML
html_theme = "pydata_sphinx_theme"
html_title = f"pescore_nb {version}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "changelog": [], "citation": []}
html_show_sourcelink = False
