"""The local engine: partition the input by meter on disk, then score partitions in a pool.

Memory stays bounded whatever the input size: pass 1 streams the input once and appends
each batch's rows to one of K spill files chosen by a hash of the meter id (an external
hash partition, so each meter's rows end up in one file, in input order); pass 2 reads
one spill file at a time per worker, groups it by meter and runs ``screen_meter`` on each.
K is chosen so that a spill file holds about ROWS_PER_PART samples.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agent.screen.layout import LongBatch
from agent.screen.meter import MeterResult, Settings, screen_meter

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


class Spill:
    """K meter-hashed spill files (Arrow IPC streams, LZ4) in ``workdir``."""

    def __init__(self, workdir: str, k: int, has_pf: bool) -> None:
        self.k = k
        self.schema = _schema(has_pf)
        self.paths = [os.path.join(workdir, "part-%04d.arrows" % i) for i in range(k)]
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


def score_part(path: str, settings: Settings) -> list[MeterResult]:
    """Group one spill file by meter (input order kept per meter) and screen each meter."""
    with pa.OSFile(path, "rb") as f:
        table = pa.ipc.open_stream(f).read_all()
    os.unlink(path)  # read whole: the disk space goes back as the run proceeds
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


def _score_part_job(job: tuple[str, Settings]) -> list[MeterResult]:
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
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def run(self, paths: list[str], settings: Settings,
            on_part: Callable[[list[MeterResult]], None]) -> None:
        """Score every spill file; results to on_part as each file finishes, so the caller
        can write and report progress as it goes."""
        if self._pool is None or len(paths) <= 1:
            for path in paths:
                on_part(score_part(path, settings))
            return
        results: Iterator[list[MeterResult]] = self._pool.imap_unordered(
            _score_part_job, [(p, settings) for p in paths])
        for res in results:
            on_part(res)
