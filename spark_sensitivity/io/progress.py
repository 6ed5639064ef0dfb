"""A run's stages on the console: each announced when it starts, its progress while it runs, its time.

Spark's own stage bars say nothing about which of our stages runs, and nothing at all over Spark
Connect or with ``--quiet``. ``stage(spark, name, rows)`` logs ``stage NAME: started`` at once, then,
every ``interval`` seconds while the stage runs, the Spark tasks done, the rows done (when the stage
knows its row count: rows x the share of tasks done in the job now running, an estimate), the rate
and the time left for that job, and finally ``stage NAME: done in S s``. Task counts come from
SparkContext's status tracker (classic) or the progress the Connect server streams back
(``registerProgressHandler``). Progress lines go to the ``spark_sensitivity`` logger at INFO, so
``--quiet`` silences them with every other info line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("spark_sensitivity")

# Seconds between progress lines; a stage shorter than this prints only its start and end.
DEFAULT_INTERVAL = 10.0


@dataclass(frozen=True)
class Tasks:
    """Tasks of the Spark stages running now: done and in all."""

    done: int
    total: int


class _ConnectTasks:
    """The latest task counts the Connect server reported for this session's operations."""

    def __init__(self) -> None:
        self.latest = Tasks(0, 0)

    def __call__(self, stages: Any, inflight_tasks: int, operation_id: Any, done: bool) -> None:
        stages = list(stages or [])
        self.latest = Tasks(sum(s.num_completed_tasks for s in stages), sum(s.num_tasks for s in stages))


def _tracker_tasks(spark: Any) -> Tasks:
    tracker = spark.sparkContext.statusTracker()
    infos = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
    infos = [info for info in infos if info is not None]
    return Tasks(sum(i.numCompletedTasks for i in infos), sum(i.numTasks for i in infos))


def describe(name: str, elapsed: float, tasks: Tasks, rows: int | None, job_start: tuple[float, int]) -> str:
    """One progress line: the stage's elapsed time, the running job's tasks, and (with a row count)
    rows done, rows/s and time left, from the task rate since the job started (``job_start``: the
    elapsed time and tasks done when it was first seen)."""
    parts = [f"stage {name}: {elapsed:.0f} s"]
    if not tasks.total:
        return ", ".join(parts)
    parts.append(f"{tasks.done}/{tasks.total} tasks of the running Spark job")
    if rows is not None:
        parts.append(f"about {rows * tasks.done // tasks.total:,} of {rows:,} rows")
    since, done_then = job_start
    rate = (tasks.done - done_then) / (elapsed - since) if elapsed > since else 0.0
    if rate > 0:
        if rows is not None:
            parts.append(f"{rows * rate / tasks.total:,.0f} rows/s")
        parts.append(f"about {(tasks.total - tasks.done) / rate:.0f} s left in this job")
    return ", ".join(parts)


class _Reporter(threading.Thread):
    def __init__(self, name: str, rows: int | None, poll: Any, interval: float):
        super().__init__(name=f"progress-{name}", daemon=True)
        self.stage_name, self.rows, self.poll, self.interval = name, rows, poll, interval
        self.finished = threading.Event()
        self.started_at = time.perf_counter()

    def run(self) -> None:
        job_start, last_total = (0.0, 0), -1
        while not self.finished.wait(self.interval):
            try:
                tasks = self.poll()
            except Exception:  # noqa: BLE001 - progress must never break the run it reports
                return
            elapsed = time.perf_counter() - self.started_at
            if tasks.total != last_total:  # a new Spark job: its rate starts now
                job_start, last_total = (elapsed, tasks.done), tasks.total
            log.info(describe(self.stage_name, elapsed, tasks, self.rows, job_start))


def _poller(spark: Any) -> tuple[Any, Any]:
    """A function returning the running tasks, and one that stops listening (Connect)."""
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        handler = _ConnectTasks()
        spark.registerProgressHandler(handler)
        return (lambda: handler.latest), (lambda: spark.removeProgressHandler(handler))
    return (lambda: _tracker_tasks(spark)), (lambda: None)


@contextmanager
def stage(
    spark: Any, name: str, rows: int | None = None, interval: float = DEFAULT_INTERVAL
) -> Iterator[None]:
    """Announces stage ``name``, reports its progress every ``interval`` seconds while the block runs,
    and logs its time at the end (or that it failed)."""
    log.info("stage %s: started%s", name, f" ({rows:,} rows)" if rows is not None else "")
    started = time.perf_counter()
    poll, stop_listening = _poller(spark)
    reporter = _Reporter(name, rows, poll, interval)
    reporter.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        reporter.finished.set()
        reporter.join()
        stop_listening()
        seconds = time.perf_counter() - started
        log.info("stage %s: %s in %.1f s", name, "done" if ok else "stopped", seconds)
