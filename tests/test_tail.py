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


def test_a_file_truncated_and_written_past_the_offset_between_reads_is_read_anew(tmp_path):
    """copytruncate, then the writer goes on past where the reader was, before the next read:
    the size never looks short, but the byte before the offset is no longer a newline."""
    old = [b'{"n":%d,"pad":"%s"}\n' % (i, b"o" * 20) for i in range(10)]
    path = _content(tmp_path, b"".join(old))
    tailer = FileTailer(str(path))
    assert len(tailer.read_available()) == 10
    new = [b'{"n":%d,"text":"%s"}\n' % (i, b"n" * 33) for i in range(20)]
    with open(path, "r+b") as fh:
        fh.truncate(0)
        fh.write(b"".join(new))
    got = tailer.read_available()
    assert [line.data for line in got] == new and got[0].lineno == 1
    assert tailer.resets == 1 and "rewritten" in tailer.reset_reason


def test_a_reader_resumed_at_an_offset_in_other_content_reads_it_from_the_start(tmp_path):
    """A checkpointed offset into a file that is not the one read (rotated or rewritten while
    nobody read it): the first read notices and starts at 0."""
    path = _content(tmp_path, b"".join(b'{"line":%d}\n' % i for i in range(40)))
    got = FileTailer(str(path), offset=100, lineno=7).read_available()  # 100: mid-line here
    assert got[0].lineno == 1 and len(got) == 40
    good = FileTailer(str(path), offset=len(b'{"line":0}\n'), lineno=1).read_available()
    assert good[0].data == b'{"line":1}\n' and good[0].lineno == 2  # a line start: resumed
