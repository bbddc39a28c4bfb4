"""What the API reference needs beyond autodoc: names resolved as Python resolves them, public bases, presets.

* **Names as the module sees them.** A docstring or annotation writes a name the way its module imports it
  (``Tensor``, ``nn.Module``, ``Path``, ``DataInfo``). When such a reference finds no target, it is looked up in the
  namespace of the module (and class) it was written in, and linked to where the object is documented: its defining
  module for nf's own objects, the shortest public path (``torch.nn.Module`` for
  ``torch.nn.modules.module.Module``) in the intersphinx inventories for the others. A name that Python could not
  resolve there stays unresolved, and the nitpicky build reports it.
* **Dataclass fields are parameters.** A dataclass documents its fields under ``Attributes:``; they are also its
  constructor's parameters, so that section is rendered as the class's parameters (one list, with types and
  descriptions, instead of an attribute list beside an undescribed parameter list).
* **No borrowed constructor.** A layer without an ``__init__`` of its own (``Reverse()``) shows the signature ``()``,
  not ``nn.Module``'s ``(*args, **kwargs)``; a protocol (``Bijector``, ``Flow``, ``Prior``) shows none, and a
  callable instance of another library's class (pluggy's ``hookimpl`` marker) no parameter list of its own.
* **Public bases.** "Bases:" lines name the public classes a class derives from, not a private helper base.
* ``.. nf-presets:: ARCH`` renders the presets an architecture registers (``ArchitectureSpec.presets``, straight from
  its ``PRESETS`` dict), with each one's settings, its training defaults and its source: the ``PRESET_SOURCES`` dict
  next to the architecture's config class. A preset without a source fails the build.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.ext import intersphinx
from sphinx.util.docutils import SphinxDirective
from torch import nn


def _lookup(namespace: dict[str, Any], dotted: str) -> Any:
    head, *rest = dotted.split(".")
    obj = namespace[head]
    for attribute in rest:
        obj = getattr(obj, attribute)
    return obj


def _candidates(obj: Any) -> list[str]:
    """The dotted names under which ``obj`` may be documented: where it is defined, then shorter public paths."""
    if inspect.ismodule(obj):
        return [obj.__name__]
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)  # a TypeVar has only a name
    if not module or not qualname:
        return []
    names = [f"{module}.{qualname}"]
    parts = module.split(".")
    for end in range(1, len(parts)):
        prefix = ".".join(parts[:end])
        try:
            if _lookup({"m": importlib.import_module(prefix)}, f"m.{qualname}") is obj:
                names.append(f"{prefix}.{qualname}")
        except (ImportError, AttributeError, KeyError):
            continue
    return names


def resolve_in_namespace(app: Sphinx, env, node: nodes.Element, contnode: nodes.Node) -> nodes.Node | None:
    """Resolve an unqualified reference through the namespace of the module (and class) that wrote it."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target:
        return None
    module = sys.modules.get(node.get("py:module") or "", None)
    namespaces = [vars(module) if module is not None else {}]
    class_name = node.get("py:class")
    if class_name:
        try:
            namespaces.insert(0, vars(_lookup(vars(module), class_name)))
        except (KeyError, AttributeError, TypeError):
            pass
    dotted = target.lstrip("~.").removeprefix("typing.")
    for namespace in namespaces:
        try:
            obj = _lookup(namespace, dotted)
        except (KeyError, AttributeError):
            try:  # an absolute dotted path that autodoc wrote out (torch.optim.optimizer.Optimizer)
                obj = _lookup({"root": importlib.import_module(dotted.rpartition(".")[0])},
                              "root." + dotted.rpartition(".")[2])
            except (ImportError, AttributeError, KeyError, ValueError):
                continue
        domain = env.get_domain("py")
        for name in _candidates(obj):
            for reftype in (node["reftype"], "obj"):
                found = domain.resolve_xref(env, node.get("refdoc"), app.builder, reftype, name, node, contnode)
                if found is not None:
                    return found
            node["reftarget"] = name
            found = intersphinx.missing_reference(app, env, node, contnode)
            node["reftarget"] = target
            if found is not None:
                return found
    return None


def dataclass_fields_as_parameters(app: Sphinx, what: str, name: str, obj: Any, options: dict,
                                   lines: list[str]) -> None:
    """Turn the ``Attributes:`` section of a dataclass into ``Args:`` when it names only ``__init__`` fields."""
    if what != "class" or not dataclasses.is_dataclass(obj):
        return
    fields = {field.name for field in dataclasses.fields(obj) if field.init}
    for index, line in enumerate(lines):
        if line.strip() != "Attributes:":
            continue
        indent = len(line) - len(line.lstrip())
        names = []
        for entry in lines[index + 1:]:
            if entry.strip() and len(entry) - len(entry.lstrip()) <= indent:
                break
            if entry.strip() and len(entry) - len(entry.lstrip()) == indent + 4:
                names.append(entry.strip().split(":")[0].split(" ")[0])
        if names and set(names) <= fields:
            lines[index] = line.replace("Attributes:", "Args:")
        return


def no_borrowed_signature(app: Sphinx, what: str, name: str, obj: Any, options: dict, signature: str | None,
                                 return_annotation: str | None) -> tuple[str, str | None] | None:
    """Show ``()`` for a module class that inherits ``torch.nn.Module.__init__(*args, **kwargs)`` unchanged, no
    signature for a protocol (it is not instantiated), and no parameter list for a callable instance of another
    library's class (a pluggy marker: pluggy documents it)."""
    if what in ("function", "data") and callable(obj) and not inspect.isroutine(obj) and not isinstance(obj, type):
        # an instance of another library's callable class (pluggy's hookspec and hookimpl markers): the parameters
        # of its __call__ are described in that library's documentation, not listed here
        app.env.temp_data.get("annotations", {}).pop(name, None)
        return None
    if what != "class" or not isinstance(obj, type):
        return None
    if getattr(obj, "_is_protocol", False):
        app.env.temp_data.get("annotations", {}).pop(name, None)
        return "", return_annotation
    if issubclass(obj, nn.Module) and obj.__init__ is nn.Module.__init__:
        app.env.temp_data.get("annotations", {}).pop(name, None)  # the parameters autodoc recorded from it
        return "()", return_annotation
    return None


def public_bases(app: Sphinx, name: str, obj: Any, options: dict, bases: list[type]) -> None:
    """Replace a private base class (``_Dequantization``) by its own bases in the "Bases:" line."""
    expanded: list[type] = []
    for base in bases:
        stack = [base]
        while stack:
            current = stack.pop(0)
            if current.__name__.startswith("_"):
                stack[:0] = list(current.__bases__)
            elif current not in expanded:
                expanded.append(current)
    bases[:] = expanded


class NfPresets(SphinxDirective):
    """``.. nf-presets:: ARCH``: a table of the architecture's presets with their settings and sources."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from nfkit_core.plugins import get_registry

        spec = get_registry().architectures.get(self.arguments[0])
        defining = sys.modules[spec.config_class.__module__]
        sources: dict[str, str] = getattr(defining, "PRESET_SOURCES", {})
        missing = sorted(set(spec.presets) - set(sources))
        if missing:
            raise self.error(f"presets of {spec.name!r} without a source in {defining.__name__}.PRESET_SOURCES: "
                             f"{missing}")
        table = nodes.table()
        group = nodes.tgroup(cols=3)
        table += group
        for width in (15, 45, 40):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += self._row(["preset", "settings (``--set model.KEY``)", "source"])
        body = nodes.tbody()
        group += body
        for preset, values in spec.presets.items():
            settings = ", ".join(f"``{key}={value!r}``" for key, value in values.items())
            if preset in spec.train_defaults:
                training = ", ".join(f"``{key}={value!r}``" for key, value in spec.train_defaults[preset].items())
                settings += f"; training defaults: {training}"
            body += self._row([f"``{preset}``", settings, sources[preset]])
        return [table]

    def _row(self, cells: list[str]) -> nodes.row:
        row = nodes.row()
        for text in cells:
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            inline, messages = self.parse_inline(text, lineno=self.lineno)
            paragraph.extend(inline)
            entry += paragraph
            entry.extend(messages)
            row += entry
        return row


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", resolve_in_namespace)
    app.connect("autodoc-process-bases", public_bases)
    # after sphinx.ext.autodoc.typehints (priority 500) recorded the parameters it would list
    app.connect("autodoc-process-signature", no_borrowed_signature, priority=600)
    # before napoleon (priority 500) turns the Google sections into fields
    app.connect("autodoc-process-docstring", dataclass_fields_as_parameters, priority=400)
    app.add_directive("nf-presets", NfPresets)
    return {"parallel_read_safe": True}
