"""The result of an evaluation: every number with the protocol that produced it, written as ``eval.json`` and
``eval.md`` (atomically: a report is either complete or absent), and several reports side by side.

``eval.json`` is strict JSON (:func:`nfkit_core.files.to_json`): a number that came out NaN or infinite is written as
``null`` with a ``reason`` beside it, never as the ``NaN`` or ``Infinity`` that other JSON readers refuse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfkit_core.files import atomic_write, to_json

__all__ = ["Measurement", "Report", "write_atomically", "side_by_side"]


@dataclass
class Measurement:
    """One reported number.

    Attributes:
        name: what it is, as the table shows it (``"bpd"``, ``"FD-digits"``, ``"KID"``).
        value: the number, or ``None`` when there is none (``reason`` says why). A NaN or infinite value becomes
            ``None``, and the reason names what it came out as.
        stderr: its standard error (or the standard deviation over KID's subsets), when there is one; a NaN or
            infinite one becomes ``None`` the same way.
        unit: ``"bits/dim"``, ``"ms"``, ...; empty for unitless numbers.
        protocol: everything needed to reproduce it (split, sample counts, seeds, K, temperature, extractor, ...).
        lower_is_better: the direction of improvement, for tables.
        reason: why ``value`` (or ``stderr``) is ``None``: the metric does not apply here, or it could not be
            computed (it came out NaN or infinite); ``None`` when both are numbers.
    """

    name: str
    value: float | None
    stderr: float | None = None
    unit: str = ""
    protocol: dict[str, Any] = field(default_factory=dict)
    lower_is_better: bool = True
    reason: str | None = None

    def __post_init__(self) -> None:
        reasons = [self.reason] if self.reason else []
        if self.value is not None and not math.isfinite(self.value):
            reasons.append(f"not computable: the value came out {self.value}")
            self.value = None
        if self.stderr is not None and not math.isfinite(self.stderr):
            reasons.append(f"the standard error came out {self.stderr}")
            self.stderr = None
        self.reason = "; ".join(reasons) or None

    def formatted(self) -> str:
        """``value ± stderr`` with four significant decimals, or ``n/a (reason)``."""
        if self.value is None:
            return f"n/a ({self.reason})" if self.reason else "n/a"
        text = _number(self.value)
        return f"{text} ± {_number(self.stderr)}" if self.stderr is not None else text

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "stderr": self.stderr, "reason": self.reason, "unit": self.unit,
                "lower_is_better": self.lower_is_better, "protocol": self.protocol}


def _number(value: float) -> str:
    if value == 0:
        return str(value)
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) >= 1e-3 else f"{value:.3e}"


@dataclass
class Report:
    """An evaluation of one flow.

    Attributes:
        subject: what was evaluated (run folder, checkpoint, or a name given in Python).
        header: architecture, dataset, split, weights, device, versions, seed.
        measurements: the numbers, in the order the metrics ran.
        figures: name -> path of each picture written.
    """

    subject: str
    header: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Measurement:
        for measurement in self.measurements:
            if measurement.name == name:
                return measurement
        raise KeyError(f"the report has no {name!r}; it has {[m.name for m in self.measurements]}")

    def __contains__(self, name: str) -> bool:
        return any(m.name == name for m in self.measurements)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (what ``eval.json`` holds)."""
        return {"subject": self.subject, **self.header,
                "metrics": {m.name: m.to_dict() for m in self.measurements}, "figures": self.figures}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Report:
        """The report that :meth:`to_dict` (``eval.json``) describes."""
        values = dict(values)
        subject, metrics, figures = values.pop("subject"), values.pop("metrics"), values.pop("figures", {})
        measurements = [Measurement(name, m["value"], m.get("stderr"), m.get("unit", ""), m.get("protocol", {}),
                                    m.get("lower_is_better", True), m.get("reason")) for name, m in metrics.items()]
        return cls(subject, values, measurements, figures)

    def to_markdown(self) -> str:
        """A table of every number, then each one's protocol."""
        lines = [f"# Evaluation of {self.subject}", ""]
        lines += [f"- {key}: {_plain(value)}" for key, value in self.header.items()]
        lines += ["", "| metric | value | unit |", "| --- | --- | --- |"]
        lines += [f"| {m.name} | {m.formatted()} | {m.unit} |" for m in self.measurements]
        lines += ["", "## Protocols", ""]
        lines += [f"- **{m.name}**: {_plain(m.protocol)}" for m in self.measurements]
        if self.figures:
            lines += ["", "## Figures", ""] + [f"- {name}: {path}" for name, path in self.figures.items()]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``eval.json`` and ``eval.md`` into ``out_dir`` (each atomically); returns their paths."""
        out_dir = Path(out_dir)
        json_path = write_atomically(out_dir / "eval.json", to_json(self.to_dict(), indent=2) + "\n")
        md_path = write_atomically(out_dir / "eval.md", self.to_markdown())
        return json_path, md_path


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_plain(item)}" for key, item in value.items())
    return str(value)


def write_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (creating its folder) through :func:`nfkit_core.files.atomic_write`: never a
    half-written file, and a full disk is a one-line error naming the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    return atomic_write(path, lambda file: file.write(data), len(data))


def side_by_side(reports: Sequence[Report], labels: Sequence[str] | None = None) -> str:
    """One Markdown table with a column per report and a row per metric (in order of first appearance); arrows say
    which direction is better."""
    labels = list(labels) if labels is not None else [r.subject for r in reports]
    names: list[str] = []
    for report in reports:
        names += [m.name for m in report.measurements if m.name not in names]
    lines = ["| metric | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(reports)]
    for name in names:
        units = {report[name].unit for report in reports if name in report} - {""}
        lower = next(report[name].lower_is_better for report in reports if name in report)
        arrow = " ↓" if lower else " ↑"
        title = f"{name} ({', '.join(sorted(units))})" if units else name
        cells = [report[name].formatted() if name in report else "" for report in reports]
        lines.append(f"| {title}{arrow} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
