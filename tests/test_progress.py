"""A stage announces itself, reports tasks, rows, rate and time left while it runs, and its time."""

import logging
import time

from spark_sensitivity.io import progress


def test_a_long_stage_reports_its_progress_while_it_runs(spark, caplog):
    def slow(batches):  # nested, so the workers get it by value
        for batch in batches:
            time.sleep(1.5)
            yield batch

    frame = spark.range(0, 6_000, numPartitions=6).mapInArrow(slow, "id long")
    stage = progress.stage(spark, "demo", rows=6_000, interval=0.5)
    with caplog.at_level(logging.INFO, logger="spark_sensitivity"), stage:
        assert frame.count() == 6_000
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage demo")]
    assert lines[0] == "stage demo: started (6,000 rows)"
    assert lines[-1].startswith("stage demo: done in ")
    running = [line for line in lines if "tasks of the running Spark job" in line]
    assert running, lines
    assert any("rows/s" in line and "s left in this job" in line for line in running), lines


def test_a_failed_stage_says_it_stopped(spark, caplog):
    with caplog.at_level(logging.INFO, logger="spark_sensitivity"):
        try:
            with progress.stage(spark, "broken"):
                raise ValueError("boom")
        except ValueError:
            pass
    assert caplog.records[-1].getMessage().startswith("stage broken: stopped in ")


def test_the_progress_line_estimates_rows_rate_and_time_left():
    line = progress.describe("dedup", 30.0, progress.Tasks(done=30, total=40), 1_000_000, (10.0, 10))
    # 20 tasks in 20 s: one task a second, 25,000 rows a second, 10 tasks (10 s) to go.
    assert line == (
        "stage dedup: 30 s, 30/40 tasks of the running Spark job, about 750,000 of 1,000,000 rows, "
        "25,000 rows/s, about 10 s left in this job"
    )
    assert progress.describe("read", 3.0, progress.Tasks(0, 0), None, (0.0, 0)) == "stage read: 3 s"
