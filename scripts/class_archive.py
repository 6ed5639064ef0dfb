"""Dumps the JVM class-data-sharing archive that fresh ``spark-sensitivity`` processes start from.

Run by scripts/setup.sh (once per virtual environment): one small select in this process, with
``-XX:ArchiveClassesAtExit``, so the archive holds the classes a select run loads. The JVM writes it
when it exits, after this process has let go of it: written to a temporary name, waited for, then
renamed, so a run never maps a half-written archive. Without Java 13 or later, or if the JVM writes
nothing, the project runs as before (docs/PERFORMANCE.md, "Class-data sharing for a fresh process").

    python scripts/class_archive.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def main() -> int:
    from pyspark import SparkContext

    from spark_sensitivity.cli import main as cli
    from spark_sensitivity.io.datasets import write_gaussian_mixture
    from spark_sensitivity.io.session import CLASS_ARCHIVE

    CLASS_ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    partial = CLASS_ARCHIVE.with_name(CLASS_ARCHIVE.name + ".partial")
    partial.unlink(missing_ok=True)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="class-archive-") as work:
        write_gaussian_mixture(Path(work) / "data", 20_000, 16, 10, seed=0)
        args = ["select", "--input", f"{work}/data", "--output", f"{work}/out", "--k", "20"]
        args += ["--sample-size", "500", "--quiet", "--spark-conf"]
        args += [f"spark.driver.extraJavaOptions=-XX:ArchiveClassesAtExit={partial} -Xlog:cds*=off"]
        if cli(args) != 0:
            return 1
        gateway = SparkContext._gateway
        if gateway is None or getattr(gateway, "proc", None) is None:
            return 1
        if SparkContext._active_spark_context is not None:
            SparkContext._active_spark_context.stop()  # its accumulator server would see the JVM go
        gateway.proc.stdin.close()  # the JVM exits on end of input, and writes the archive then
        gateway.proc.wait(timeout=600)
    if not partial.is_file() or partial.stat().st_size == 0:
        print("no class-data-sharing archive written; fresh processes start without one", file=sys.stderr)
        return 0
    partial.replace(CLASS_ARCHIVE)
    print(f"class-data-sharing archive: {CLASS_ARCHIVE.stat().st_size >> 20} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
