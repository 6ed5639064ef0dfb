"""A real Spark standalone cluster on 127.0.0.1 for tests: one master and workers from spark-class.

Each process is started in a process group of its own and stopped through that group's id, so the
executors a worker launched stop with it (their Python daemons, which make a group of their own,
exit when their executor's pipe closes). Logs go to files under the test's folder;
:meth:`StandaloneCluster.diagnostics` puts their last lines into failure messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import venv
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyspark

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO / "spark_sensitivity"
JOB = REPO / "jobs" / "select_subset.py"
SPARK_BIN = Path(pyspark.__file__).parent / "bin"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check: Callable[[], T | None], timeout: float, what: str, details: Callable[[], str]) -> T:
    """Polls ``check`` until it returns a truthy value; fails with ``details()`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{details()}")


def get_json(url: str) -> Any:
    """The JSON at ``url``, or None while the server is not answering (or not with JSON yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def package_zip(dest: Path) -> Path:
    """The package as a user ships it with --py-files: a zip of spark_sensitivity/ without caches."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE_DIR.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(REPO))
    return dest


def python_without_package(dest: Path) -> Path:
    """A virtual environment with this interpreter's dependencies (numpy, pyarrow, pyspark, ...) but
    without spark_sensitivity, like a cluster node's Python: the package can only come from --py-files.

    Every entry of the current site-packages is linked in, except the package itself, its metadata and
    the .pth hooks of an editable install.
    """
    venv.EnvBuilder(symlinks=True, with_pip=False).create(dest)
    here = Path(pyspark.__file__).parent.parent
    (target,) = (dest / "lib").glob("python3*/site-packages")
    for entry in here.iterdir():
        skipped = entry.suffix == ".pth" or entry.name.startswith(
            ("spark_sensitivity", "spark-sensitivity", "__editable__")
        )
        if not skipped:
            (target / entry.name).symlink_to(entry)
    return dest / "bin" / "python"


class StandaloneCluster:
    """A master and ``workers`` workers (``cores`` each) on free loopback ports, plus the drivers
    submitted to it; :meth:`stop` ends every process group it started."""

    def __init__(self, root: Path, workers: int = 2, cores: int = 1, memory: str = "1g"):
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_DIRS=str(root / "local"))
        self.env.pop("PYTHONPATH", None)
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.worker_ui_ports: dict[str, int] = {}
        self.workers, self.cores, self.memory = workers, cores, memory

    def start(self) -> StandaloneCluster:
        self._spawn(
            "master",
            [str(SPARK_BIN / "spark-class"), "org.apache.spark.deploy.master.Master"]
            + ["--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port)],
        )
        for i in range(self.workers):
            name, ui = f"worker-{i}", free_port()
            self.worker_ui_ports[name] = ui
            self._spawn(
                name,
                [str(SPARK_BIN / "spark-class"), "org.apache.spark.deploy.worker.Worker", self.url]
                + ["--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory]
                + ["--webui-port", str(ui), "--work-dir", str(self.root / name)],
            )
        wait_for(
            lambda: (self.master_state() or {}).get("aliveworkers") == self.workers,
            90,
            f"{self.workers} workers to register",
            self.diagnostics,
        )
        return self

    def _spawn(self, name: str, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        with open(self.logs / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env or self.env,
                cwd=self.root,
                start_new_session=True,  # its own process group: children are stopped with it
            )

    def master_state(self) -> dict | None:
        return get_json(f"http://127.0.0.1:{self.ui_port}/json/")

    def worker_state(self, name: str) -> dict | None:
        return get_json(f"http://127.0.0.1:{self.worker_ui_ports[name]}/json/")

    def worker_of(self, app_id: str, executor_id: str) -> str | None:
        """The name of the worker that runs an application's executor, if it answers."""
        for name in self.worker_ui_ports:
            executors = (self.worker_state(name) or {}).get("executors", [])
            if any(e["appid"] == app_id and str(e["id"]) == executor_id for e in executors):
                return name
        return None

    def submit(
        self,
        name: str,
        job_args: Sequence[str],
        python: Path,
        py_files: Path,
        conf: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        """Starts ``spark-submit --master spark://... --py-files ZIP jobs/select_subset.py ARGS``.

        ``python`` runs the driver and the executors; the driver's output goes to ``logs/NAME.log``.
        """
        command = [str(SPARK_BIN / "spark-submit"), "--master", self.url, "--py-files", str(py_files)]
        for key, value in (conf or {}).items():
            command += ["--conf", f"{key}={value}"]
        command += [str(JOB), *job_args]
        env = dict(self.env, PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python))
        self._spawn(name, command, env)
        return self.processes[name]

    def finish(self, name: str, timeout: float) -> int:
        """Waits for a submitted driver and returns its exit status; kills it after ``timeout`` s."""
        process = self.processes[name]
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._end(process)
            raise AssertionError(f"{name} did not finish in {timeout:.0f} s\n{self.diagnostics()}") from None

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        """SIGKILL to a process and everything it started (a worker: its executors too)."""
        _signal_group(self.processes[name], signal.SIGKILL)
        self.processes[name].wait(10)

    def stop(self) -> None:
        """Ends every process group this cluster started: drivers first, then workers, then the master."""
        for process in reversed(list(self.processes.values())):
            self._end(process)

    @staticmethod
    def _end(process: subprocess.Popen) -> None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(10)
        # A leader that has exited may leave members behind (an executor whose worker was killed).
        _signal_group(process, signal.SIGKILL)

    def diagnostics(self, lines: int = 40) -> str:
        """The last lines of every log: master, workers (with their executors' stderr) and drivers."""
        parts = []
        for name in self.processes:
            tail = self.log(name).splitlines()[-lines:]
            parts.append(f"--- {name} ---\n" + "\n".join(tail))
        for stderr in sorted(self.root.glob("worker-*/app-*/*/stderr")):
            tail = stderr.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {stderr.relative_to(self.root)} ---\n" + "\n".join(tail))
        return "\n".join(parts)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(process.pid, sig)
