"""FileTailer: whole lines only, offsets at line starts, oversize lines skipped, any chunk size."""

from __future__ import annotations

import pytest

from kit_otel.model.decoder import OversizeLine
from kit_otel.sources.tail import FileTailer


def _content(tmp_path, data: bytes):
    path = tmp_path / "events.ndjson"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 16])
def test_lines_offsets_and_a_partial_last_line(tmp_path, chunk):
    lines = [b'{"a":"%s"}\n' % (b"y" * (i % 37)) for i in range(200)]
    path = _content(tmp_path, b"".join(lines) + b'{"partial"')
    tailer = FileTailer(str(path), chunk=chunk)
    got = tailer.read_available()
    assert [line.data for line in got] == lines
    assert [line.lineno for line in got] == list(range(1, 201))
    ends = [sum(map(len, lines[: i + 1])) for i in range(200)]
    assert [line.end_offset for line in got] == ends
    assert tailer.offset == ends[-1]  # the partial line waits for its newline
    with open(path, "ab") as fh:
        fh.write(b"}\n")
    (last,) = tailer.read_available()
    assert last.data == b'{"partial"}\n' and last.lineno == 201


@pytest.mark.parametrize("chunk", [5, 16, 1 << 16])
def test_oversize_lines_are_reported_by_length_and_the_next_lines_kept(tmp_path, chunk):
    big = b"x" * 100 + b"\n"
    path = _content(tmp_path, b"ok1\n" + big + b"ok2\n" + big + big + b"ok3\n")
    got = FileTailer(str(path), max_bytes=50, chunk=chunk).read_available()
    kinds = [(line.data.length if isinstance(line.data, OversizeLine) else line.data)
             for line in got]
    assert kinds == [b"ok1\n", 101, b"ok2\n", 101, 101, b"ok3\n"]
    assert [line.lineno for line in got] == [1, 2, 3, 4, 5, 6]
    assert got[-1].end_offset == path.stat().st_size


def test_max_lines_resumes_where_it_stopped(tmp_path):
    lines = [b"line %d\n" % i for i in range(50)]
    path = _content(tmp_path, b"".join(lines))
    tailer = FileTailer(str(path), chunk=64)
    got = []
    while batch := tailer.read_available(max_lines=7):
        assert len(batch) <= 7
        got.extend(batch)
    assert [line.data for line in got] == lines
    assert [line.lineno for line in got] == list(range(1, 51))
