"""The Spark session a command runs in (classic: a JVM in this process, or Spark Connect), and what
happens to its work when the command is interrupted."""

from __future__ import annotations

import _thread
import contextlib
import functools
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, TypeVar

from pyspark.sql import SparkSession, is_remote

from spark_sensitivity.core.runtime import has_jvm

PROGRESS_BARS = "spark.ui.showConsoleProgress"
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
# A JVM class-data-sharing archive of the classes a select run loads (scripts/setup.sh dumps it):
# a driver JVM this process launches maps them instead of loading and verifying each one again,
# which took about a fifth off a fresh process's time (docs/PERFORMANCE.md). A JVM or class path other
# than the one it was dumped with only makes the JVM ignore it.
CLASS_ARCHIVE = Path(sys.prefix) / "share" / "spark-sensitivity" / "spark-classes.jsa"
_CDS_OPTIONS = ("-XX:SharedArchiveFile", "-XX:ArchiveClassesAtExit", "-Xshare")


def spark_session(
    app_name: str,
    conf: Sequence[tuple[str, str]],
    quiet: bool = False,
    verbose: bool = False,
    remote: str | None = None,
) -> SparkSession:
    """The session a command runs in.

    Spark Connect when ``remote`` (``--remote``) or the SPARK_REMOTE variable names a server
    (``sc://host:15002``, or ``local[2]`` to start one here); otherwise the active classic session
    (under spark-submit) or a new one, local[*] unless a master is set.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    remote = remote or os.environ.get("SPARK_REMOTE")
    if not remote and is_remote():
        # A Connect environment set up by the platform (Databricks serverless, shared clusters).
        return _started(SparkSession.builder.appName(app_name))
    if remote:
        local = remote.startswith("local")
        _jvm_logs_to_file(local and not verbose)
        if quiet and local:  # the server's JVM starts here: without progress bars (see below)
            from pyspark import SparkContext

            # Launched as pyspark launches its local Connect server: without SPARK_REMOTE in the
            # environment, else spark-submit builds a client's class path, without the server's
            # plugin (ClassNotFoundException: SparkConnectPlugin).
            remote_env = os.environ.pop("SPARK_REMOTE", None)
            try:
                SparkContext._ensure_initialized(conf=_no_progress_bars())
            finally:
                if remote_env is not None:
                    os.environ["SPARK_REMOTE"] = remote_env
        builder = SparkSession.builder.remote(remote).appName(app_name)
        for key, value in conf:
            builder = builder.config(key, value)
        return _started(builder)

    from pyspark import SparkConf, SparkContext

    # Under spark-submit, --master and --conf values are JVM system properties; SparkConf sees them
    # only once the gateway is up. Defaults never override them.
    launching = SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ
    _jvm_logs_to_file(launching and not verbose)
    # pyspark launches its JVM as a shell ("pyspark-shell"), and spark-submit turns progress bars on
    # for shells unless the launch itself says otherwise: a --conf at launch, not the builder, decides.
    # So do the driver's memory and JVM options: every --spark-conf goes to the launch too.
    SparkContext._ensure_initialized(conf=_launch_conf(conf, quiet) if launching else None)
    submitted = SparkConf()
    defaults = {
        "spark.log.level": "INFO" if verbose else "ERROR" if quiet else "WARN",
        PROGRESS_BARS: str(not quiet).lower(),
        "spark.master": os.environ.get("SPARK_MASTER", "local[*]"),
    }
    builder = SparkSession.builder
    # spark-submit's --name wins; without one it names the application after the script: ours instead.
    if submitted.get("spark.app.name", os.path.basename(sys.argv[0])) == os.path.basename(sys.argv[0]):
        builder = builder.appName(app_name)
    if launching and not verbose:
        del defaults["spark.log.level"]  # the log file's configuration has set it, without a message
    for key, value in defaults.items():
        if not submitted.contains(key):
            builder = builder.config(key, value)
    for key, value in conf:
        builder = builder.config(key, value)
    return _started(builder)


def _no_progress_bars() -> Any:
    from pyspark import SparkConf

    return SparkConf(loadDefaults=False).set(PROGRESS_BARS, "false")


def _launch_conf(conf: Sequence[tuple[str, str]], quiet: bool) -> Any:
    """What the JVM this process starts is launched with (spark-submit's --conf): the user's settings,
    which include those read only at launch (spark.driver.memory, spark.driver.extraJavaOptions), no
    progress bars when quiet, and :data:`CLASS_ARCHIVE` when it exists and the user's JVM options
    name no class-data-sharing archive of their own."""
    from pyspark import SparkConf

    launch = _no_progress_bars() if quiet else SparkConf(loadDefaults=False)
    for key, value in conf:
        launch.set(key, value)
    options = launch.get(DRIVER_JAVA_OPTIONS, "")
    if CLASS_ARCHIVE.is_file() and not any(option in options for option in _CDS_OPTIONS):
        # Without the archive (another JVM or class path) the JVM runs as before: say nothing then.
        sharing = f"-XX:SharedArchiveFile={CLASS_ARCHIVE} -Xlog:cds*=off"
        launch.set(DRIVER_JAVA_OPTIONS, f"{sharing} {options}".strip())
    return launch


def _started(builder: SparkSession.Builder) -> SparkSession:
    """The builder's session. Starting a SparkContext installs pyspark's own SIGINT handler, which
    calls into the JVM from inside the signal handler: the command's handler is kept instead."""
    on_main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if on_main else None
    session = builder.getOrCreate()
    if handler is not None and signal.getsignal(signal.SIGINT) is not handler:
        signal.signal(signal.SIGINT, handler)
    _sessions.append(session)
    return session


@functools.cache
def run_log() -> Path:
    """Where this process's command keeps Spark's logs and, should it fail inside Spark, the full
    trace: a file in the system's temp folder, kept only then (the error line names it)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path(tempfile.gettempdir()) / f"spark-sensitivity-{stamp}-{os.getpid()}.log"


def _jvm_logs_to_file(own_jvm: bool) -> None:
    """Without --verbose, the JVM this process starts logs to :func:`run_log` and not to the console:
    a failed task's stack traces would otherwise fill the screen. No start-up banner either."""
    opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
    if not own_jvm or "log4j2.configurationFile" in opts:
        return
    config = Path(__file__).with_name("log4j2-quiet.properties")
    log = f"-Dlog4j2.configurationFile={config} -Dspark_sensitivity.log={run_log()}"
    os.environ["SPARK_SUBMIT_OPTS"] = f"{opts} {log}".strip()


# Interrupts. A signal handler runs in the main thread between two Python instructions, possibly in
# the middle of a call into Spark (a py4j socket read, a gRPC stream) or of publishing's renames:
# raising there would abandon a Spark job that may still write into the staging folder, or leave an
# output half moved. So the handler raises only outside both; otherwise it cancels Spark's work from
# another thread and has the interrupt delivered again once the main thread is back in plain Python.

# Frames of these modules mean the main thread is waiting on Spark (the JVM, or a Connect server).
SPARK_CALL_MODULES = ("py4j.", "grpc.", "pyspark.sql.connect.client.")
IDLE_WAIT_SECONDS = 120.0
_WHOLE: set[CodeType] = set()
_sessions: list[SparkSession] = []

Function = TypeVar("Function", bound=Callable[..., Any])


class Interrupted(BaseException):
    """The command got SIGINT or SIGTERM (a BaseException, as KeyboardInterrupt is)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process a signal ended."""
        return 128 + self.signum


def runs_whole(function: Function) -> Function:
    """Marks ``function`` as one an interrupt never cuts short: raised after it returns instead."""
    _WHOLE.add(function.__code__)
    return function


def _must_not_raise(frame: FrameType | None) -> tuple[bool, bool]:
    """Whether ``frame``'s stack is inside a Spark call, and whether inside a ``runs_whole`` function."""
    in_spark = whole = False
    while frame is not None:
        in_spark = in_spark or frame.f_globals.get("__name__", "").startswith(SPARK_CALL_MODULES)
        whole = whole or frame.f_code in _WHOLE
        frame = frame.f_back
    return in_spark, whole


def stop_spark_work(spark: SparkSession | None = None, cancel: bool = True) -> None:
    """Cancels (when ``cancel``) every running Spark job of ``spark``, else of the sessions the
    commands started, and waits until no job or task of this process's JVM runs: a task whose job
    failed or was cancelled may still be committing its files, which must not land in a folder after
    it was removed."""
    for session in ([spark] if spark is not None else list(_sessions)) if cancel else []:
        # The JVM or the server may be gone already: then nothing of it runs.
        with contextlib.suppress(Exception):
            session.sparkContext.cancelAllJobs() if has_jvm(session) else session.interruptAll()
    from pyspark import SparkContext

    context = SparkContext._active_spark_context  # classic, or the server behind --remote local[n]
    if context is not None:
        _wait_until_idle(context)


def _wait_until_idle(context: Any) -> None:
    deadline = time.monotonic() + IDLE_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            jobs = len(context._jsc.sc().statusTracker().getActiveJobIds())
            busy = jobs or _running_tasks(context) or _connect_operations(context)
        except Exception:  # the JVM is ending (SIGTERM to the whole group): wait for its exit
            process = getattr(context._gateway, "proc", None)
            with contextlib.suppress(Exception):
                process.wait(max(0.0, deadline - time.monotonic()))
            return
        if not busy:
            return
        time.sleep(0.1)


def _connect_operations(context: Any) -> int:
    """Operations the Spark Connect server in this process still executes. An interrupted one ends
    its call at once, but its thread may still be committing a write."""
    threads = context._jvm.java.lang.Thread.getAllStackTraces().keySet().iterator()
    running = 0
    while threads.hasNext():
        running += str(threads.next().getName()).startswith("SparkConnectExecuteThread")
    return running


def _running_tasks(context: Any) -> int:
    """Tasks launched and not yet reported ended, as the task scheduler itself counts them: the
    status tracker learns of a task's start through the listener bus, possibly late."""
    counts = context._jsc.sc().taskScheduler().runningTasksByExecutors().valuesIterator()
    running = 0
    while counts.hasNext():
        running += counts.next()
    return running


class InterruptHandler:
    """SIGINT and SIGTERM while a command runs: :class:`Interrupted` raised at a safe point.

    A context manager; it installs the handlers and restores the previous ones. ``signum`` is the
    first signal received (None without one); a second signal raises even inside a Spark call.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._count = 0  # signals received; deliveries by the canceller are not counted
        self._redelivered = 0
        self._raised = False
        self._canceller: threading.Thread | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptHandler:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may handle signals
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self.disarm()
        if self._canceller is not None:
            self._canceller.join(IDLE_WAIT_SECONDS)
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def disarm(self) -> None:
        """No more raising: the command is reporting how it ended."""
        self._raised = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        if self._redelivered:
            self._redelivered -= 1
        else:
            self._count += 1
        if self._raised:
            return
        in_spark, whole = _must_not_raise(frame)
        if whole or (in_spark and self._count == 1):
            if self._canceller is None:
                self._canceller = threading.Thread(target=self._cancel_until_raised, daemon=True)
                self._canceller.start()
            return
        self._raised = True
        raise Interrupted(self.signum)

    def _cancel_until_raised(self) -> None:
        main = threading.main_thread().ident
        while not self._raised:
            stop_spark_work()
            in_spark, whole = _must_not_raise(sys._current_frames().get(main))
            if not in_spark and not whole and not self._raised:
                self._redelivered += 1
                _thread.interrupt_main(self.signum)
            time.sleep(0.1)
