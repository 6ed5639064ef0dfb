"""Peak memory of the driver: resident set of the Python process and of the JVM, and the JVM heap.

A helper of ``python -m benchmarks.performance.compare`` and ``python -m
benchmarks.performance.scale`` (the driver memory rows of docs/PERFORMANCE.md). Not run on its own.

Peak resident sets come from the kernel (VmHWM in /proc/PID/status), reset by writing 5 to
/proc/PID/clear_refs, so a warm-up before the measured run does not count. The JVM heap peak is
the sum of the heap pools' peak usage (java.lang.management), also reset at the start. In local
mode the driver JVM runs the tasks too, so its figures include the executors' working memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MIB = 1 << 20


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/{pid}/status has no {field}")


def _reset_peak_rss(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class DriverMemory:
    """Peak memory of this Python process and of the Spark driver JVM it started."""

    def __init__(self, spark: Any):
        self._jvm = spark.sparkContext._jvm
        self.jvm_pid = int(spark.sparkContext._gateway.proc.pid)
        self.python_pid = os.getpid()

    def _heap_pools(self) -> list[Any]:
        factory = self._jvm.java.lang.management.ManagementFactory
        heap = self._jvm.java.lang.management.MemoryType.HEAP
        return [pool for pool in factory.getMemoryPoolMXBeans() if pool.getType() == heap]

    def reset(self) -> bool:
        """Starts a new measurement; False when the kernel does not allow resetting the peaks."""
        for pool in self._heap_pools():
            pool.resetPeakUsage()
        return _reset_peak_rss(self.jvm_pid) and _reset_peak_rss(self.python_pid)

    def peaks(self) -> dict[str, float]:
        """Peaks since the last reset, and the JVM heap still in use after a full GC, in MiB.

        The heap peak counts garbage not yet collected, so it follows the collector's timing; what
        survives a full GC is what the driver holds on to.
        """
        heap = sum(pool.getPeakUsage().getUsed() for pool in self._heap_pools())
        self._jvm.java.lang.System.gc()
        live = self._jvm.java.lang.management.ManagementFactory.getMemoryMXBean().getHeapMemoryUsage()
        return {
            "python_peak_rss_mib": round(_status_kib(self.python_pid, "VmHWM") / 1024, 1),
            "jvm_peak_rss_mib": round(_status_kib(self.jvm_pid, "VmHWM") / 1024, 1),
            "jvm_peak_heap_mib": round(heap / MIB, 1),
            "jvm_heap_after_gc_mib": round(live.getUsed() / MIB, 1),
        }
