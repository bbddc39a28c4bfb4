"""Write the intersphinx inventories of torch, torchvision, numpy and pluggy, so the docs build links them offline.

Their projects publish ``objects.inv`` only on their web sites, which the docs build must not need. This script
writes equivalent inventories from the installed packages: every public class and function of the modules below,
under its public name and under the name autodoc resolves type hints to (``torch.nn.modules.module.Module``,
``torch._C.Generator``), each pointing at the page of the official documentation that describes it. Run it after
upgrading one of these packages and commit the result::

    python docs/_inventories/make_inventories.py

``python.inv`` is the CPython 3.11 documentation's own inventory, copied from Debian's ``python3.11-doc`` package
(``/usr/share/doc/python3.11/html/objects.inv``).
"""

from __future__ import annotations

import importlib
import inspect
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).parent


def _torch_page(name: str) -> str:
    special = {"torch.Tensor": "tensors.html", "torch.device": "tensor_attributes.html",
               "torch.dtype": "tensor_attributes.html"}
    if name in special:
        return special[name]
    if name.startswith("torch.utils.data"):
        return "data.html"
    return f"generated/{name}.html"


PROJECTS: dict[str, tuple[str, Iterable[str], Callable[[str], str]]] = {
    "torch": ("PyTorch", ["torch", "torch.nn", "torch.nn.functional", "torch.utils.data",
                          "torch.utils.data.distributed", "torch.distributed", "torch.optim"], _torch_page),
    "torchvision": ("torchvision", ["torchvision.datasets"], lambda name: f"generated/{name}.html"),
    "numpy": ("NumPy", ["numpy", "numpy.random"],
              lambda name: "random/generator.html" if name == "numpy.random.Generator" else f"generated/{name}.html"),
    "pluggy": ("pluggy", ["pluggy"], lambda name: "api_reference.html"),
}


def entries(modules: Iterable[str], page: Callable[[str], str]) -> dict[str, str]:
    """``{"name domain:role": "page#anchor"}`` for the public classes and functions of ``modules``."""
    found: dict[str, str] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for attribute in getattr(module, "__all__", None) or dir(module):
            if attribute.startswith("_"):
                continue
            obj = getattr(module, attribute, None)
            role = "py:class" if inspect.isclass(obj) else "py:function" if callable(obj) else None
            if role is None:
                continue
            public = f"{module_name}.{attribute}"
            if f"{public} {role}" in found:
                continue
            target = f"{page(public)}#{public}"
            found[f"{public} {role}"] = target
            defined = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
            if inspect.isclass(obj) and defined != public and not defined.startswith("."):
                found.setdefault(f"{defined} {role}", target)
    if "torch" in modules:
        found["torch.Tensor py:class"] = "tensors.html#torch.Tensor"
    return found


def write_inventory(path: Path, project: str, version: str, found: dict[str, str]) -> None:
    header = f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version.split('+')[0]}\n"
    header += "# The remainder of this file is compressed using zlib.\n"
    lines = "".join(f"{key} 1 {target} -\n" for key, target in sorted(found.items()))
    path.write_bytes(header.encode() + zlib.compress(lines.encode()))


def main() -> None:
    for package, (project, modules, page) in PROJECTS.items():
        version = importlib.import_module(package).__version__
        found = entries(modules, page)
        write_inventory(HERE / f"{package}.inv", project, version, found)
        print(f"{package}.inv: {len(found)} entries ({project} {version})")


if __name__ == "__main__":
    main()
