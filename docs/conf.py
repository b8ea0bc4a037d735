"""Sphinx configuration of lbinv's documentation: `make docs` builds it into docs/_build/html, warnings as errors."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# the examples run in this process: their small tensor ops are fastest on one thread (docs/performance.md)
torch.set_num_threads(1)

project = "lbinv"
author = "the lbinv developers"
copyright = "2026, the lbinv developers"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from the site itself: the pages render without the internet
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings say the types; the signatures stay short
autodoc_default_options = {"members": True, "show-inheritance": False}
numpydoc_show_class_members = False  # the API page lists the members it shows
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
}

html_theme = "furo"
html_title = "lbinv"
html_static_path: list[str] = []
