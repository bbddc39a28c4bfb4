"""The check that a second run of a benchmark reproduces the first: figures paired by position, medians in ranges."""

from __future__ import annotations

import pytest
import reproduce

FIRST = """# report

stamp with 1.0 (0.5-2.0) outside any table

| model | impl | params | steps/s | peak MiB | speed-up |
|---|---|---|---|---|---|
| MAF | nf | 63,080 | 108 (92.3-115) | 4.2 | 1.12x (0.971-1.19x) / 1.28x (1.16-1.46x) |
| MAF | zuko | 63,080 | 96.5 (90.8-111) | 4.9 | baseline |

| config | s/image |
|---|---|
| small | 0.0113 (0.0101-0.0125) |
| large | 1,203 (1,100-1,500) |
"""

SECOND = """# report

| model | impl | params | steps/s | peak MiB | speed-up |
|---|---|---|---|---|---|
| MAF | nf | 63,080 | 112 (100-119) | 4.4 | 1.2x (1.01-1.3x) / 1.3x (1.2-1.4x) |
| MAF | zuko | 63,080 | 89.9 (80-95) | 5.1 | baseline |

| config | s/image |
|---|---|
| small | 0.0119 (0.011-0.013) |
| large | 1,050 (1,000-1,100) |
"""


def test_figures_are_read_by_position_and_untimed_cells_are_not_labels():
    figures = reproduce.figures(FIRST)
    assert [f.text for f in figures] == ["108 (92.3-115)", "1.12x (0.971-1.19x)", "1.28x (1.16-1.46x)",
                                         "96.5 (90.8-111)", "0.0113 (0.0101-0.0125)", "1,203 (1,100-1,500)"]
    assert figures[0].row == "MAF / nf" and figures[0].column == "steps/s" and figures[5].table == 1
    assert [f.ratio for f in figures] == [False, True, True, False, False, False]
    assert (figures[5].median, figures[5].low, figures[5].high) == (1203.0, 1100.0, 1500.0)


def test_each_median_of_the_second_run_is_checked_against_the_first_runs_range():
    pairs, text = reproduce.compare(FIRST, SECOND)
    assert [ok for *_, ok in pairs] == [True, False, True, False, True, False]
    assert text.startswith("3 of 6 medians of the second run lie within the first run's range: 1 of 2 speed-ups, "
                           "2 of 4 rates and times.")


def test_reports_of_different_commands_are_refused():
    with pytest.raises(SystemExit, match="differ in shape"):
        reproduce.compare(FIRST, SECOND.replace("| MAF | zuko", "| MAF | other"))
    with pytest.raises(SystemExit, match="hold 6 and 1 figures"):
        reproduce.compare(FIRST, "| a | b |\n|---|---|\n| x | 1 (0-2) |\n")


def test_continuation_rows_are_labelled_by_the_row_above_and_placeholders_are_no_labels():
    first = ("| config | variant | steps/s | MFU |\n|---|---|---|---|\n| small | | | |\n"
             "| | nf | 1.5 (1.2-1.8) | - |\n| large | nf | 0.2 (0.1-0.3) | - |\n")
    figures = reproduce.figures(first)
    assert [f.row for f in figures] == ["small / nf", "large / nf"]
    second = first.replace(" | MFU |", " |").replace("|---|---|---|---|", "|---|---|---|").replace(" | - |", " |")
    assert [ok for *_, ok in reproduce.compare(first, second)[0]] == [True, True]


def test_lists_of_untimed_counts_are_no_labels():
    first = "| config | img/s | iterations per block |\n|---|---|---|\n| small | 480 (398-516) | 7, 8, 8, 8 |\n"
    second = first.replace("480 (398-516)", "430 (400-470)").replace("7, 8, 8, 8", "8, 10, 10, 10")
    assert [f.row for f in reproduce.figures(first)] == ["small"]
    assert [ok for *_, ok in reproduce.compare(first, second)[0]] == [True]


def test_reports_of_different_hardware_are_compared_only_on_request(tmp_path, capsys):
    stamp = "- hardware: {}, 2 logical CPUs, torch threads: 1; load average {} at the start, 1.0 at the end\n"
    milan = "AMD EPYC (cpu family 25, model 1, stepping 1; PyTorch kernels: AVX2; bf16 arithmetic: emulated)"
    first, same, other = tmp_path / "first.md", tmp_path / "same.md", tmp_path / "other.md"
    first.write_text(stamp.format(milan, "0.5") + FIRST)
    same.write_text(stamp.format(milan, "1.9") + SECOND)  # the load average is no part of the machine
    other.write_text(stamp.format("AMD EPYC", "0.5") + SECOND)
    assert reproduce.hardware(first.read_text()) == f"{milan}, 2 logical CPUs, torch threads: 1"

    assert reproduce.main([str(first), str(same), "--output", str(tmp_path / "comparison.md")]) == 0
    assert "3 of 6 medians of the second run" in (tmp_path / "comparison.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as error:
        reproduce.main([str(first), str(other)])
    assert error.value.code == 2
    message = capsys.readouterr().err
    assert "different hardware" in message and "'AMD EPYC, 2 logical CPUs, torch threads: 1'" in message
    assert "--different-hardware" in message
    assert reproduce.main([str(first), str(other), "--different-hardware"]) == 0
    printed = capsys.readouterr().out
    assert f"Different hardware: the first run on {milan}" in printed and "3 of 6 medians" in printed
