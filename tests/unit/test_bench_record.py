"""bench/_record.py: a bench's `--out` file holds its output under a provenance header, and only
when the bench finished."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _record  # noqa: E402


def test_out_file_has_header_then_the_output_and_ends_with_the_headline(tmp_path, capsys):
    out = tmp_path / "docs" / "bench" / "x.txt"
    with _record.recorded(out, ["bench/x.py", "--k", "2"]):
        print("setup 3 s")
        print("x_speedup=1.23")
    assert capsys.readouterr().out == "setup 3 s\nx_speedup=1.23\n"  # the terminal still sees it
    lines = out.read_text().splitlines()
    head = [x for x in lines if x.startswith(_record.HEADER_PREFIX)]
    assert lines[: len(head)] == head  # the header comes first, the output after it
    assert lines[len(head) :] == ["setup 3 s", "x_speedup=1.23"]
    text = "\n".join(head)
    assert "command: python bench/x.py --k 2" in text
    assert "commit: " in text and "cpu: " in text and "dtype auto = " in text and "load average" in text
    assert _record.last_line(out) == "x_speedup=1.23"


def test_a_failed_bench_writes_no_file(tmp_path):
    out = tmp_path / "x.txt"
    with pytest.raises(ZeroDivisionError), _record.recorded(out, ["bench/x.py"]):
        print("half a measurement")
        _ = 1 / 0
    assert not out.exists()
    assert not list(tmp_path.iterdir())  # no partial file left either


def test_without_out_nothing_is_written(tmp_path, capsys):
    with _record.recorded(None):
        print("x=1")
    assert capsys.readouterr().out == "x=1\n"
    assert not list(tmp_path.iterdir())


def test_a_bench_that_printed_nothing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="printed nothing"), _record.recorded(tmp_path / "x.txt", ["b.py"]):
        pass
    assert not (tmp_path / "x.txt").exists()


def test_every_bench_can_record_its_output():
    benches = [p for p in sorted(Path(_record.__file__).parent.glob("*.py")) if not p.name.startswith("_")]
    assert benches
    missing = [p.name for p in benches if "add_out_argument(ap)" not in p.read_text()]
    assert not missing, f"benches without --out (bench/_record.py): {missing}"
