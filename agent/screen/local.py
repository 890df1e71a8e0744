"""The local engine: partition the input by meter on disk, then score partitions in a pool.

Memory stays bounded whatever the input size: pass 1 streams the input once and appends
each batch's rows to one of K spill files chosen by a hash of the meter id (an external
hash partition, so each meter's rows end up in one part, in input order); pass 2 reads
one part at a time per worker, groups it by meter and runs ``screen_meter`` on each.
K is chosen so that a part holds about ROWS_PER_PART samples. With several workers and
Parquet input, pass 1 runs in the workers too, each on a range of row groups writing its
own set of K files; a part is then those files, read in input order.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agent.screen.layout import LongBatch, Units, normalize
from agent.screen.meter import MeterResult, Settings, screen_meter
from agent.screen.problems import Problems
from agent.screen.sources import Source, batches, row_groups

ROWS_PER_PART = 1_000_000
MAX_PARTS = 1024
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


def part_count(est_rows: int, workers: int) -> int:
    """Spill files: about ROWS_PER_PART samples each, and at least two per worker so the
    pool stays busy while the last big file finishes."""
    k = -(-max(1, est_rows) // ROWS_PER_PART)
    if workers > 1:
        k = max(k, 2 * workers)
    return max(1, min(MAX_PARTS, k))


def _schema(has_pf: bool) -> pa.Schema:
    fields = [("meter", pa.string()), ("t", pa.float64()), ("p", pa.float64())]
    if has_pf:
        fields.append(("pf", pa.float64()))
    return pa.schema(fields)


def spill_path(workdir: str, part: int, tag: int) -> str:
    """Part ``part``'s file written by pass-1 job ``tag`` (0 when the parent reads)."""
    return os.path.join(workdir, "part-%04d-%03d.arrows" % (part, tag))


class Spill:
    """K meter-hashed spill files (Arrow IPC streams, LZ4) in ``workdir``."""

    def __init__(self, workdir: str, k: int, has_pf: bool, tag: int = 0) -> None:
        self.k = k
        self.schema = _schema(has_pf)
        self.paths = [spill_path(workdir, i, tag) for i in range(k)]
        self.rows = [0] * k
        self._writers: list[pa.ipc.RecordBatchStreamWriter | None] = [None] * k
        self._sinks: list[pa.OSFile | None] = [None] * k
        self._part_of: dict[str, int] = {}

    def _writer(self, i: int) -> pa.ipc.RecordBatchStreamWriter:
        w = self._writers[i]
        if w is None:
            sink = pa.OSFile(self.paths[i], "wb")
            w = pa.ipc.new_stream(sink, self.schema, options=_IPC)
            self._sinks[i] = sink
            self._writers[i] = w
        return w

    def _parts(self, names: list[str]) -> np.ndarray:
        part_of = self._part_of
        out = np.empty(len(names), dtype=np.int64)
        for j, m in enumerate(names):
            k = part_of.get(m)
            if k is None:
                k = zlib.crc32(m.encode("utf-8")) % self.k
                if len(part_of) < 1_000_000:  # a cache, bounded: 10 M meters stream too
                    part_of[m] = k
            out[j] = k
        return out

    def add(self, b: LongBatch) -> None:
        if len(b) == 0:
            return
        enc = pc.dictionary_encode(b.meter)
        if isinstance(enc, pa.ChunkedArray):
            enc = enc.combine_chunks()
        part = self._parts(enc.dictionary.to_pylist())[enc.indices.to_numpy(
            zero_copy_only=False)]
        order = np.argsort(part, kind="stable")
        counts = np.bincount(part, minlength=self.k)
        cols = [b.meter.take(pa.array(order)), pa.array(b.t[order]), pa.array(b.p[order])]
        if b.pf is not None:
            cols.append(pa.array(b.pf[order]))
        batch = pa.RecordBatch.from_arrays(cols, schema=self.schema)
        start = 0
        for i in np.nonzero(counts)[0]:
            n = int(counts[i])
            self._writer(int(i)).write_batch(batch.slice(start, n))
            self.rows[int(i)] += n
            start += n

    def close(self) -> list[str]:
        """Finish every file; the paths of those holding rows, largest first."""
        for w, s in zip(self._writers, self._sinks):
            if w is not None:
                w.close()
            if s is not None:
                s.close()
        used = [i for i in range(self.k) if self.rows[i]]
        used.sort(key=lambda i: -self.rows[i])
        pa.default_memory_pool().release_unused()  # pass 1's buffers, before the workers
        return [self.paths[i] for i in used]


def _numbers(arr: pa.Array | pa.ChunkedArray, dtype: type) -> np.ndarray:
    """A spill column (no nulls) as NumPy, read from its buffer. ``to_numpy`` gives the same
    values but makes pyarrow import pandas (~0.25 CPU-s in every worker) to check for
    pandas types that a spill file never holds."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("a spill column holds nulls")
    size = np.dtype(dtype).itemsize
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr),
                         offset=arr.offset * size)


def score_part(paths: list[str], settings: Settings) -> list[MeterResult]:
    """Group one part (its spill files, in input order) by meter, input order kept per
    meter, and screen each meter."""
    tables = []
    for path in paths:
        with pa.OSFile(path, "rb") as f:
            tables.append(pa.ipc.open_stream(f).read_all())
        os.unlink(path)  # read whole: the disk space goes back as the run proceeds
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    del tables
    meter = table.column("meter").combine_chunks()
    enc = pc.dictionary_encode(meter)
    codes = _numbers(enc.indices, np.int32)
    names = enc.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(codes, minlength=len(names)))))
    t = _numbers(table.column("t"), np.float64)[order]
    p = _numbers(table.column("p"), np.float64)[order]
    pf = (_numbers(table.column("pf"), np.float64)[order] if "pf" in table.column_names
          else None)
    del table, meter, enc, codes, order
    out = []
    for j, name in enumerate(names):
        a, b = int(bounds[j]), int(bounds[j + 1])
        out.append(screen_meter(name, t[a:b], p[a:b], None if pf is None else pf[a:b],
                                settings))
    return out


@dataclass(frozen=True)
class SpillJob:
    """Pass 1 for some row groups of one Parquet file, in a worker."""

    src: Source
    groups: tuple[int, ...]
    units: Units
    workdir: str
    k: int
    tag: int


def spill_job(job: SpillJob) -> tuple[list[int], Problems]:
    """Rows per part written by this job, and the input problems it met."""
    problems = Problems()
    spill = Spill(job.workdir, job.k, job.src.layout.has_pf, job.tag)
    try:
        for b in batches(job.src, problems, list(job.groups) or None):
            spill.add(normalize(b, job.src.layout, job.units, problems))
    finally:
        spill.close()
    return spill.rows, problems


def _score_part_job(job: tuple[list[str], Settings]) -> list[MeterResult]:
    return score_part(*job)


def _warm() -> None:
    """Pool initializer: import what scoring needs now, while the parent reads the input
    (this module's own imports, NumPy and pyarrow, come with the initializer itself; the
    detector and the policy are imported by the first MeterScorer)."""
    for name in ("agent.policy", "agent.signature"):
        importlib.import_module(name)


class Workers:
    """The local engine's processes. Started before pass 1, so that their start-up (a
    Python each, importing NumPy, pyarrow and the detector, ~0.5 CPU-s) runs on the other
    cores while the parent partitions the input, not after it. ``workers=1`` scores in
    this process."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = None
        if workers > 1:
            # spawn, not fork: the parent may hold threads (Arrow's pools) that fork
            # would copy in whatever state they were in.
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(processes=workers, initializer=_warm)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def partition(self, sources: list[Source], units: Units, k: int, workdir: str,
                  problems: Problems, on_rows: Callable[[str, int], None]) -> list[list[str]]:
        """Pass 1: every source's rows into K parts; each part's files, largest part first.
        ``on_rows(path, rows so far)`` reports progress."""
        has_pf = sources[0].layout.has_pf
        groups = [row_groups(src) for src in sources] if self._pool is not None else []
        if sum(groups) < 2:  # one process reads (CSV streams, a one-group Parquet file)
            spill = Spill(workdir, k, has_pf)
            rows = 0
            for src in sources:
                for b in batches(src, problems):
                    lb = normalize(b, src.layout, units, problems)
                    spill.add(lb)
                    rows += len(lb)
                    on_rows(src.path, rows)
            return [[path] for path in spill.close()]
        jobs = []
        for src, n in zip(sources, groups):
            if n == 0:  # a CSV among Parquet inputs: one job reads it whole
                jobs.append(SpillJob(src, (), units, workdir, k, len(jobs) + 1))
                continue
            step = -(-n // (2 * self.workers))  # two jobs per worker: none waits long
            for a in range(0, n, step):
                jobs.append(SpillJob(src, tuple(range(a, min(n, a + step))), units,
                                     workdir, k, len(jobs) + 1))
        assert self._pool is not None
        per_part = [0] * k
        files: list[list[str]] = [[] for _ in range(k)]
        done = 0
        # imap (in order): a part's files are listed in job order, which is input order.
        for job, (rows, found) in zip(jobs, self._pool.imap(spill_job, jobs)):
            problems.add(found)
            for i, n in enumerate(rows):
                if n:
                    per_part[i] += n
                    files[i].append(spill_path(workdir, i, job.tag))
            done += sum(rows)
            on_rows(job.src.path, done)
        used = [i for i in range(k) if per_part[i]]
        used.sort(key=lambda i: -per_part[i])
        return [files[i] for i in used]

    def run(self, parts: list[list[str]], settings: Settings,
            on_part: Callable[[list[MeterResult]], None]) -> None:
        """Score every part; results to on_part as each part finishes, so the caller can
        write and report progress as it goes."""
        if self._pool is None or len(parts) <= 1:
            for paths in parts:
                on_part(score_part(paths, settings))
            return
        results: Iterator[list[MeterResult]] = self._pool.imap_unordered(
            _score_part_job, [(paths, settings) for paths in parts])
        for res in results:
            on_part(res)
