"""Options of the command line: ``--config FILE.toml``, ``--set key=value``, and listing a config's fields.

A run's options live in three sections: ``model`` (the architecture's config dataclass), ``data`` (the dataset's)
and ``train`` (:class:`nfkit_core.train.TrainConfig`). A TOML file names them as tables::

    arch = "glow"
    dataset = "digits"
    preset = "digits"          # optional

    [model]
    hidden_channels = 64

    [train]
    steps = 500

``--set`` takes ``section.key=value``, or a bare ``key=value`` when exactly one section has that key. Values are
read as TOML literals (``3``, ``1e-3``, ``true``, ``[0.9, 0.99]``, ``"text"``), anything else as a plain string;
``none`` unsets an optional option.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import textwrap
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nfkit_core.errors import ConfigError, MissingFileError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["SECTIONS", "parse_value", "parse_assignment", "parse_assignments", "load_toml", "field_docs",
           "describe_fields", "section_values"]

SECTIONS = ("model", "data", "train")
TOP_LEVEL = ("arch", "dataset", "preset")


def parse_value(text: str) -> Any:
    """A TOML literal (number, boolean, array, quoted string), else the text itself."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(assignment: str) -> tuple[str, Any]:
    """Split one ``--set`` argument, ``key=value``, into the key and the parsed value (:func:`parse_value`)."""
    key, separator, text = assignment.partition("=")
    key = key.strip()
    if not separator or not key:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    return key, parse_value(text.strip())


def parse_assignments(assignments: Iterable[str], sections: Mapping[str, type]) -> dict[str, dict[str, Any]]:
    """Sort ``key=value`` strings into sections.

    Args:
        assignments: the ``--set`` arguments.
        sections: the config dataclass of each section name (used to place bare keys).

    Returns:
        for every section name, the ``{key: parsed value}`` of its options.
    """
    result: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for assignment in assignments:
        key, value = parse_assignment(assignment)
        section, dot, name = key.partition(".")
        if dot:
            if section not in sections:
                raise ConfigError(f"--set {key}: unknown section {section!r}; sections: {', '.join(sections)}")
        else:
            name = key
            owners = [s for s, cls in sections.items() if name in {f.name for f in dataclasses.fields(cls)}]
            if len(owners) != 1:
                known = {s: sorted(f.name for f in dataclasses.fields(cls)) for s, cls in sections.items()}
                reason = (f"is an option of {' and '.join(owners)}; write " + " or ".join(f"{o}.{name}" for o in owners)
                          if owners else f"is no option; known options: {known}")
                raise ConfigError(f"--set {key}: {name!r} {reason}")
            section = owners[0]
        result[section][name] = value
    return result


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a run configuration file; a clear error for a missing file, bad TOML or unknown tables."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"config file {path} not found")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(values) - set(SECTIONS) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{path}: unknown entries {unknown}; expected the keys {', '.join(TOP_LEVEL)} and the "
                         f"tables [{'], ['.join(SECTIONS)}]")
    for section in SECTIONS:
        if not isinstance(values.get(section, {}), dict):
            raise ConfigError(f"{path}: {section} must be a table ([{section}])")
    return values


def field_docs(config_class: type) -> dict[str, str]:
    """Field descriptions from the ``Attributes:`` section of a dataclass's (Google-style) docstring."""
    doc = textwrap.dedent("\n".join((config_class.__doc__ or "").splitlines()[1:]))
    match = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)*)", doc, flags=re.MULTILINE)
    if not match:
        return {}
    docs: dict[str, str] = {}
    current = None
    for line in textwrap.dedent(match.group(1)).splitlines():
        entry = re.match(r"^(\w+)(?: \(.*?\))?:\s*(.*)$", line)
        if entry:
            current = entry.group(1)
            docs[current] = entry.group(2)
        elif current and line.strip():
            docs[current] += " " + line.strip()
    return docs


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def describe_fields(config_class: type, section: str, presets: Mapping[str, Mapping[str, Any]] | None = None,
                    width: int = 100, train_defaults: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A listing of a config dataclass's options (name, type, default, description) for ``--help``.

    ``presets`` are listed after the options, each with the training defaults it brings (``train_defaults``).
    """
    docs = field_docs(config_class)
    hints = typing.get_type_hints(config_class)
    lines = []
    for field in dataclasses.fields(config_class):
        if field.default is not dataclasses.MISSING:
            default = repr(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            default = repr(field.default_factory())
        else:
            default = "required"
        lines.append(f"  {section}.{field.name}: {_type_name(hints[field.name])} = {default}")
        if field.name in docs:
            lines.extend(textwrap.wrap(docs[field.name], width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    if presets:
        lines.append("  presets (--preset NAME):")
        for name, values in presets.items():
            lines.extend(textwrap.wrap(f"{name}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()), width,
                                       initial_indent=" " * 4, subsequent_indent=" " * 6))
            train = (train_defaults or {}).get(name)
            if train:
                lines.extend(textwrap.wrap("training defaults: " + ", ".join(f"train.{k}={v!r}" for k, v in
                                                                            train.items()),
                                           width, initial_indent=" " * 6, subsequent_indent=" " * 8))
    return "\n".join(lines)


def section_values(file_values: Mapping[str, Any], assignments: Mapping[str, Mapping[str, Any]],
                   section: str) -> dict[str, Any]:
    """A section's options: the file's table, overridden by ``--set``."""
    return {**file_values.get(section, {}), **assignments.get(section, {})}

