"""The Spark engine: the input partitioned and sorted by meter, the same per-meter function.

The only module that imports PySpark (an optional extra: ``pip install loadwatch[spark]``;
Spark needs Java 17). Spark reads the files (so on a cluster they may be on HDFS or S3 and
are split across executors), every column as text; each meter's group then goes through
``layout.normalize`` and ``meter.screen_meter``, the same two functions the local engine
runs, so the same rows give the same events. One result row per meter comes back to the
driver and is written by the same ``Outputs`` as the local engine's.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator

from agent.screen.layout import Layout, Units, normalize
from agent.screen.meter import EventRow, MeterResult, Settings, screen_meter
from agent.screen.problems import Problems

RESULT_SCHEMA = (
    "meter string, samples long, first_t double, last_t double, interval_s double, "
    "coverage double, days_scored double, max_score double, max_score_t double, "
    "schedule string, summary string, alerts_raised long, alert_open boolean, "
    "error string, events string, problems string")


class SparkUnavailable(RuntimeError):
    """PySpark or Java is missing, or the session would not start; says which and the fix."""


def _row(r: MeterResult) -> dict:
    return {
        "meter": r.meter, "samples": r.samples, "first_t": r.first_t, "last_t": r.last_t,
        "interval_s": r.interval_s, "coverage": r.coverage, "days_scored": r.days_scored,
        "max_score": r.max_score, "max_score_t": r.max_score_t, "schedule": r.schedule,
        "summary": r.summary, "alerts_raised": r.alerts_raised, "alert_open": r.alert_open,
        "error": r.error, "events": json.dumps([e.__dict__ for e in r.events]),
        "problems": json.dumps(r.problems.as_dict()),
    }


_FLOATS = ("first_t", "last_t", "interval_s", "coverage", "days_scored", "max_score",
           "max_score_t")


def _result(row: dict) -> MeterResult:
    r = MeterResult(row["meter"])
    for k in _FLOATS:  # pandas NaN arrives as null through Arrow
        setattr(r, k, math.nan if row[k] is None else float(row[k]))
    for k in ("samples", "schedule", "summary", "alerts_raised", "alert_open", "error"):
        setattr(r, k, row[k])
    r.events = [EventRow(**e) for e in json.loads(row["events"])]
    r.problems = Problems.from_dict(json.loads(row["problems"]))
    return r


def screen_rows(table, layout: Layout, units: Units, settings: Settings) -> dict:
    """One meter's rows (an Arrow table, as Spark read them) -> its result row: the same
    ``normalize`` and ``screen_meter`` as the local engine."""
    problems = Problems()
    lb = normalize(table, layout, units, problems)
    if len(lb) == 0:
        r = MeterResult("")  # no usable row: only the problems go back
    else:
        r = screen_meter(lb.meter[0].as_py(), lb.t, lb.p, lb.pf, settings)
    r.problems.add(problems)
    return _row(r)


def partition_function(layout: Layout, units: Units, settings: Settings):
    """What each Spark task runs (``mapInArrow``): its partition's rows, sorted by meter, as
    Arrow batches in; one result row per meter out, each meter screened as soon as its
    last row has arrived, so a task holds one meter's rows and one batch at a time.

    (``groupBy(meter).applyInArrow`` gives the same groups, but cost the JVM ~0.7 us a
    sample more in framing every group as its own Arrow stream: measured 7.2 vs 5.8 CPU-s
    on 2.88 M samples with a function that does nothing.)
    """

    def run(batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        schema = _result_schema()
        rows: list[dict] = []
        pending: list = []
        key = None
        for b in batches:
            n = b.num_rows
            if n == 0:
                continue
            # Runs of one meter in this batch (a null id and "" both mean "no meter").
            keys = pc.fill_null(b.column(b.schema.get_field_index("meter")), "")
            cuts = [0]
            if n > 1:
                change = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
                cuts.extend(i + 1 for i in pc.indices_nonzero(change).to_pylist())
            cuts.append(n)
            for a, z in zip(cuts, cuts[1:]):
                k = keys[a].as_py()
                if k != key and pending:
                    rows.append(screen_rows(pa.Table.from_batches(pending), layout, units,
                                            settings))
                    pending = []
                    if len(rows) >= 256:
                        yield pa.RecordBatch.from_pylist(rows, schema=schema)
                        rows = []
                key = k
                pending.append(b.slice(a, z - a))
        if pending:
            rows.append(screen_rows(pa.Table.from_batches(pending), layout, units, settings))
        if rows:
            yield pa.RecordBatch.from_pylist(rows, schema=schema)

    return run


def _result_schema():
    """RESULT_SCHEMA as an Arrow schema (built once per Python worker)."""
    global _ARROW_SCHEMA
    if _ARROW_SCHEMA is None:
        import pyarrow as pa

        types = {"string": pa.string(), "long": pa.int64(), "double": pa.float64(),
                 "boolean": pa.bool_()}
        _ARROW_SCHEMA = pa.schema([(n, types[t]) for n, t in
                                   (f.split() for f in RESULT_SCHEMA.split(", "))])
    return _ARROW_SCHEMA


_ARROW_SCHEMA = None


_LOCAL_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def _java_options_set() -> bool:
    """The user already chose the driver's JVM options (spark-defaults.conf, or
    PYSPARK_SUBMIT_ARGS): theirs win."""
    if "extraJavaOptions" in os.environ.get("PYSPARK_SUBMIT_ARGS", "") or \
            "driver-java-options" in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        return True
    home = os.environ.get("SPARK_CONF_DIR") or os.path.join(
        os.environ.get("SPARK_HOME", ""), "conf")
    try:
        with open(os.path.join(home, "spark-defaults.conf")) as f:
            return "spark.driver.extraJavaOptions" in f.read()
    except OSError:
        return False


def _session(master: str | None):
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable("--engine spark needs PySpark: pip install 'loadwatch[spark]'"
                               ) from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise SparkUnavailable("--engine spark needs Java 17 (Debian: apt-get install "
                               "openjdk-17-jre-headless; `make setup` does this)")
    # Executors on this machine run the driver's interpreter (with loadwatch importable);
    # on a cluster, spark-submit's PYSPARK_PYTHON wins.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName("loadwatch-screen")
    if not master and "spark.master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        master = "local[*]"
    if master:
        b = b.master(master)
    if master and master.startswith("local"):
        # A local run listens on loopback only (Spark otherwise binds the host's first
        # non-loopback address and says so in a warning).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        b = b.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1")
        if not _java_options_set():
            # The local JVM is the driver and the executor, and most of its CPU in a
            # screening run is start-up: the C2 compiler's work alone roughly doubled the
            # JVM's CPU time (measured: 29 -> 15 CPU-s for 576 k samples on local[2]). The
            # C1 compiler only, and one GC thread, leave the cores to the Python workers
            # that do the scoring. A cluster's JVMs keep their own settings.
            b = b.config("spark.driver.extraJavaOptions", _LOCAL_JVM)
    b = b.config("spark.ui.enabled", "false").config(
        "spark.ui.showConsoleProgress", "false").config(
        "spark.sql.execution.arrow.pyspark.enabled", "true")
    try:
        spark = b.getOrCreate()
    except Exception as e:  # Py4J/Java start-up failures have no common base class
        raise SparkUnavailable("Spark would not start: %s" % _first_line(e)) from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def reads_as_parquet(paths: list[str]) -> bool:
    """CSV when every path names a CSV file (.csv, .csv.gz, .gz, .txt), else Parquet (a
    directory of part files is Parquet, as Spark and Hive write them)."""
    return not all(p.lower().endswith((".csv", ".csv.gz", ".gz", ".txt")) for p in paths)


class SparkJob:
    """One screening run on Spark: the session, the input as Spark reads it, the results.

    The driver never opens the input files itself (they may be ``hdfs://`` or ``s3a://``
    URLs that only Spark can read): the layout comes from Spark's view of the header or
    schema, and the unit check from the first rows Spark returns.
    """

    def __init__(self, paths: list[str], master: str | None) -> None:
        self.paths = list(paths)
        self.spark = _session(master)

    def stop(self) -> None:
        self.spark.stop()

    def _is_parquet(self) -> bool:
        return reads_as_parquet(self.paths)

    def layout(self) -> Layout:
        """The header (CSV) or schema (Parquet) of the inputs, as the local engine sees it."""
        from agent.screen.layout import LayoutError, detect

        try:
            if self._is_parquet():
                cols = self.spark.read.parquet(*self.paths).columns
            else:
                cols = self.spark.read.option("header", True).csv(self.paths).columns
        except Exception as e:  # AnalysisException (no such path) and Py4J errors
            raise LayoutError("%s: Spark cannot read it: %s"
                              % (", ".join(self.paths), _first_line(e))) from None
        return detect(cols)

    def _frame(self, layout: Layout):
        from pyspark.sql import functions as F
        from pyspark.sql.types import StringType, StructField, StructType

        if self._is_parquet():
            df = self.spark.read.parquet(*self.paths)
            df = df.toDF(*[c.strip().lower() for c in df.columns])
            ts = dict(df.dtypes).get("timestamp", "")
            if ts.startswith("timestamp"):  # to UNIX seconds here, not via pandas' zone
                df = df.withColumn("timestamp", F.col("timestamp").cast("double"))
        else:
            schema = StructType([StructField(c, StringType()) for c in layout.columns])
            df = self.spark.read.csv(self.paths, header=True, schema=schema,
                                     mode="PERMISSIVE", enforceSchema=True)
        return df.withColumn("meter", F.trim(F.col("meter")))

    def sample(self, layout: Layout, units: Units, n: int) -> tuple[list[float], list[float]]:
        """The first ``n`` samples, normalized as every group will be (for unit checks)."""
        table = self._frame(layout).limit(n if layout.kind == "long" else
                                          max(1, n // layout.points)).toArrow()
        lb = normalize(table, layout, units, Problems())
        return lb.t.tolist(), lb.p.tolist()

    def results(self, layout: Layout, units: Units, settings: Settings,
                problems: Problems, waiting: Callable[[int, int], None] | None = None
                ) -> Iterator[MeterResult]:
        """Screen every meter; the results then stream back to the driver.

        Every partition is scored at once, on all the cores Spark has, and kept by Spark
        (memory, else its disk: ~1 KB a meter); only then are the results fetched a
        partition at a time. ``toLocalIterator`` alone runs one job per partition, so
        the scoring would run on two partitions at a time (with prefetch) whatever the
        cluster's size. ``waiting(done, total)`` reports scored partitions meanwhile.
        Rows that never reach a meter (no meter id) add only to ``problems``.
        """
        from pyspark import StorageLevel

        df = self._frame(layout)
        # Partitions by CPU, not by bytes: scoring costs a few us a sample in Python, so a
        # partition of a few MB is already seconds of work. Four per core keeps every core
        # busy to the end; adaptive execution would merge shuffle partitions towards 64 MB
        # each (seen with groupBy: 8 -> 3 uneven ones, a core idle for the last third).
        # (A repartition to a stated number is never merged by adaptive execution.)
        n_parts = max(2, self.spark.sparkContext.defaultParallelism * 4)
        out = df.repartition(n_parts, "meter").sortWithinPartitions("meter").mapInArrow(
            partition_function(layout, units, settings), RESULT_SCHEMA)
        out = out.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            self._materialize(out, n_parts, waiting)
            for row in out.toLocalIterator():
                r = _result(row.asDict())
                if not r.meter:
                    problems.add(r.problems)
                    continue
                yield r
        finally:
            out.unpersist()

    def _materialize(self, out, n_parts: int,
                     waiting: Callable[[int, int], None] | None) -> None:
        """Run the scoring job (``count`` over the persisted result) and report the
        scored partitions every second while it runs."""
        failed: list[BaseException] = []

        def run() -> None:
            try:
                out.count()
            except BaseException as e:  # re-raised in the caller's thread
                failed.append(e)

        job = threading.Thread(target=run, name="screen-spark-job", daemon=True)
        job.start()
        tracker = self.spark.sparkContext.statusTracker()
        while job.is_alive():
            job.join(1.0)
            if waiting is not None:
                done = 0
                for sid in tracker.getActiveStageIds():
                    info = tracker.getStageInfo(sid)
                    if info is not None and info.numTasks == n_parts:
                        done = max(done, info.numCompletedTasks)
                waiting(done, n_parts)
        if failed:
            raise failed[0]


def _first_line(e: BaseException) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    return lines[0] if lines else type(e).__name__
