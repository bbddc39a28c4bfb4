"""Does a second run of a benchmark reproduce the first? Compare the medians of two reports of the same command.

Every timed figure of a report is written ``median (low-high)`` (``common.Spread.format``). This script reads two
reports of the same command, pairs their figures by position (table, row, column, and order within the cell), and
says for each whether the second run's median lies within the range the first run reports, which is what
benchmarks/README.md promises a reader who re-runs a committed command on the same machine. Rows are paired only
when their labels agree: the cells without figures, plain numbers (or lists of them, such as iteration counts) or
the placeholder ``-`` (a column without a value on this device, such as MFU on a CPU), led by the first cell of the
row above when a row leaves it empty (the rows that continue a configuration). Reports whose tables differ in shape
are an error, and so are reports whose stamps name different hardware (``--different-hardware`` compares them
anyway, to see how a table carries over to another machine, and the comparison's heading says so).

    python benchmarks/reproduce.py FIRST.md SECOND.md
    python benchmarks/reproduce.py FIRST.md SECOND.md --output benchmarks/results/reproducibility_x.md
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

NUMBER = r"[0-9][0-9,]*(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?"
FIGURE = re.compile(rf"({NUMBER})(x?) \(({NUMBER})x?-({NUMBER})x?\)")
PLAIN = re.compile(rf"{NUMBER}(?:, {NUMBER})*")  # untimed figures (a memory median, iteration counts): no label
PLACEHOLDERS = {"", "-"}  # an empty cell, or a column without a value here: not part of a row's label either
HARDWARE = re.compile(r"^- hardware: (.*?); load average", re.MULTILINE)  # the stamp's line (``common.Stamp``)


@dataclass(frozen=True)
class Figure:
    """One ``median (low-high)`` figure and where it stands in its report."""

    table: int
    row: str
    column: str
    median: float
    low: float
    high: float
    text: str
    ratio: bool  # a speed-up (``1.07x (0.98-1.15x)``) rather than a rate or a time


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def figures(report: str) -> list[Figure]:
    """Every ``median (low-high)`` figure of a Markdown report, table by table, row by row, left to right."""
    found: list[Figure] = []
    table, header, in_table, leading = -1, [], False, ""
    for line in report.splitlines():
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if not in_table:
            table, header, in_table, leading = table + 1, cells, True, ""
            continue
        if all(set(cell) <= set("-: ") for cell in cells):
            continue
        leading = cells[0] or leading
        labels = [leading] + [cell for cell in cells[1:] if cell not in PLACEHOLDERS and not FIGURE.search(cell)
                              and not PLAIN.fullmatch(cell)]
        label = " / ".join(cell for cell in labels if cell not in PLACEHOLDERS)
        for index, cell in enumerate(cells):
            column = header[index] if index < len(header) else str(index)
            for match in FIGURE.finditer(cell):
                median, suffix, low, high = match.groups()
                found.append(Figure(table, label, column, _number(median), _number(low), _number(high),
                                    match.group(0), suffix == "x"))
    return found


def hardware(report: str) -> str | None:
    """The machine a report's stamp names (its ``hardware`` line without the load averages), or None without one."""
    match = HARDWARE.search(report)
    return match.group(1) if match else None


def compare(first: str, second: str) -> tuple[list[tuple[Figure, Figure, bool]], str]:
    """Pair the figures of two reports; return ``(first, second, second median within first range)`` per figure
    and a Markdown report of the comparison."""
    a, b = figures(first), figures(second)
    if len(a) != len(b) or not a:
        raise SystemExit(f"error: the reports hold {len(a)} and {len(b)} figures; compare two reports of the same "
                         "command (a report without `median (low-high)` figures cannot be compared)")
    pairs = []
    for x, y in zip(a, b):
        if (x.table, x.row, x.column) != (y.table, y.row, y.column):
            raise SystemExit(f"error: the reports differ in shape at table {x.table + 1}, row '{x.row}', column "
                             f"'{x.column}' against '{y.row}', '{y.column}'")
        pairs.append((x, y, x.low <= y.median <= x.high))
    def count(ratios: bool) -> str:
        chosen = [ok for x, _, ok in pairs if x.ratio == ratios]
        return f"{sum(chosen)} of {len(chosen)}"
    inside = sum(ok for *_, ok in pairs)
    lines = [f"{inside} of {len(pairs)} medians of the second run lie within the first run's range: {count(True)} "
             f"speed-ups, {count(False)} rates and times.", "",
             "| table | row | column | first run | second run | within |", "|---|---|---|---|---|---|"]
    lines += [f"| {x.table + 1} | {x.row} | {x.column} | {x.text} | {y.text} | {'yes' if ok else '**no**'} |"
              for x, y, ok in pairs]
    return pairs, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="the report of the first run (e.g. the committed table)")
    parser.add_argument("second", type=Path, help="the report of a second run of the same command")
    parser.add_argument("--output", type=Path, help="also write the comparison to this Markdown file")
    parser.add_argument("--different-hardware", action="store_true",
                        help="compare reports whose stamps name different hardware (which the check of a second run "
                             "is not)")
    args = parser.parse_args(argv)
    first, second = args.first.read_text(), args.second.read_text()
    machines = hardware(first), hardware(second)
    different = machines[0] != machines[1]
    if different and not args.different_hardware:
        parser.error(f"the reports name different hardware: {machines[0]!r} against {machines[1]!r}. A second run "
                     "reproduces a table only on the machine of the first: time both runs on one machine, or pass "
                     "--different-hardware to see how the table carries over. (Stamps made before the CPU's family, "
                     "model and kernels were recorded name it by model name alone: such a table cannot be checked "
                     "against a new run; re-measure it and its second run.)")
    _, text = compare(first, second)
    header = f"# Reproducibility: `{args.first}` against a second run `{args.second}`\n\n"
    if different:
        header += f"Different hardware: the first run on {machines[0]}, the second on {machines[1]}.\n\n"
    print(header + text, end="")
    if args.output:
        args.output.write_text(header + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
