"""The order in which `replay` reads several files: each KIT process's spool files merged by `seq`.

One KIT process writes one spool file per bridge instance (main agent, each in-process subagent,
each hot reload), all numbering their lines from one per-process `seq` counter. A subagent's lines
sit in their own file but happened between its parent's `subagent_start` and `subagent_end`, so
reading file after file would put the child's whole run after its parent's turn. Files of one
process are therefore merged by `seq`; processes (and files that are not a bridge's) are read one
after another, in the order given, so one process's clock never runs ahead of another's.

A process is the files of one `pid` whose `seq` ranges continue one another: a file whose first
line has `seq` 1 starts a new process even when the pid was seen before (pids are reused).
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from kit_otel.sources.spool import peek_first

_SPOOL_NAME = re.compile(r"^kit-(\d+)-.*\.ndjson$")


@dataclass
class ProcessFiles:
    pid: int | None  # None: not a bridge spool file, read on its own
    paths: list[str] = field(default_factory=list)


def group_by_process(paths: list[str], max_bytes: int) -> list[ProcessFiles]:
    groups: list[ProcessFiles] = []
    open_group: dict[int, ProcessFiles] = {}
    for path in paths:
        match = _SPOOL_NAME.match(Path(path).name)
        first = peek_first(path, max_bytes) if match else None
        event = first.event if first is not None else None
        if match is None or event is None or not event.seq:
            groups.append(ProcessFiles(None, [path]))
            continue
        pid = event.pid or int(match.group(1))
        group = open_group.get(pid)
        if group is None or event.seq == 1:
            group = open_group[pid] = ProcessFiles(pid)
            groups.append(group)
        group.paths.append(path)
    return groups


def merge_by_seq(sources: list[Iterator[tuple[int, object]]]) -> Iterator[object]:
    """Items of several sources, each yielding (seq, item) in seq order, in one seq order."""
    if len(sources) == 1:
        for _, item in sources[0]:
            yield item
        return
    for _, item in heapq.merge(*sources, key=lambda pair: pair[0]):
        yield item
