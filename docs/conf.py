"""Sphinx configuration of the nf documentation."""

import importlib
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
    "sphinx.ext.intersphinx",
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
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "nf: normalizing flows"
suppress_warnings = ["autosummary.import_cycle"]

# Links into the documentation of Python, PyTorch, NumPy and pluggy, from inventories kept in docs/_inventories so
# that the build needs no network (docs/_inventories/make_inventories.py says where each comes from).
intersphinx_mapping = {
    "python": ("https://docs.python.org/3.11/", "_inventories/python.inv"),
    "torch": ("https://docs.pytorch.org/docs/stable/", "_inventories/torch.inv"),
    "torchvision": ("https://docs.pytorch.org/vision/stable/", "_inventories/torchvision.inv"),
    "numpy": ("https://numpy.org/doc/stable/reference/", "_inventories/numpy.inv"),
    "pluggy": ("https://pluggy.readthedocs.io/en/stable/", "_inventories/pluggy.inv"),
}
exclude_patterns += ["_inventories", "plugin_example"]

TORCH_FORWARD_BOILERPLATE = "Should be overridden by all subclasses."


def drop_pytorch_boilerplate(app, what, name, obj, options, lines):
    """Show no docstring rather than the one nn.Module.forward lends to every forward() written without one."""
    if what == "method" and any(TORCH_FORWARD_BOILERPLATE in line for line in lines):
        lines.clear()


def resolve_reexport(app, env, node, contnode):
    """Resolve a name where users import it (``nfkit_core.Sequential``) to where it is documented, its definition
    (``nfkit_core.transform.Sequential``); methods and attributes follow their class."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("nfkit_"):
        return None
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:split + 1]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        defined = getattr(obj, "__module__", None)
        if not defined or defined == ".".join(parts[:split]):
            return None
        canonical = ".".join([defined, getattr(obj, "__qualname__", parts[split]), *parts[split + 1:]])
        domain = env.get_domain("py")
        return domain.resolve_xref(env, node.get("refdoc"), app.builder, node["reftype"], canonical, node, contnode)
    return None


# --- API reference (docs-api): nitpicky references, names resolved in their module's namespace, public bases,
# the presets tables (docs/_ext/nf_api_reference.py). ---
extensions.append("nf_api_reference")
nitpicky = True
# --- end of the API reference block ---


def setup(app):
    app.connect("autodoc-process-docstring", drop_pytorch_boilerplate)
    app.connect("missing-reference", resolve_reexport)
