"""Sphinx configuration of the nf documentation."""

import sys
from pathlib import Path

# docs/_ext holds this site's own extensions (the command-line reference).
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "nf"
author = "the nf developers"
copyright = "2026, the nf developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    # Serves MathJax 3.2.2 from _static/mathjax (sets mathjax_path): formulas render offline.
    "sphinx-mathjax-offline",
    "sphinxarg.ext",
    "nf_cli_reference",
]
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports = ["flash_attn"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "nf: normalizing flows"
suppress_warnings = ["autosummary.import_cycle"]
