"""Publishing an output folder whole or not at all, and never over data that is not ours.

Every job builds its output under a hidden staging folder next to the destination and moves it into
place at the end. What this module guarantees (tests/test_safety.py checks each point):

- The destination is never the input, a folder that contains the input, or a folder inside it.
- ``--overwrite`` replaces only an earlier output of this tool: a folder holding the commit marker
  ``_PUBLISHED`` (or, from older versions, a manifest). A regular file or any other folder is
  refused, with or without ``--overwrite``.
- The old output is moved aside by an atomic rename, the new one renamed into place, and only then is
  the old one deleted. If a rename fails (a mount point, an immutable folder, a permission), the old
  output is put back untouched and the run ends with one line. Renames never fall back to
  copy-then-delete on local and HDFS paths.
- One publisher at a time per destination: a lock file ``.NAME.lock`` created exclusively. A second
  run waits for it, then re-checks the destination: without ``--overwrite`` it fails ("exists"), with
  it it replaces the first run's output whole. Never a nested or mixed folder.
- Staging folders, moved-aside old outputs and locks carry their owner (host and process id) in
  their name or content. A later run removes those of dead owners; if a run died between moving the
  old output aside and moving the new one in, the next run puts the old output back first.
- An interrupt (SIGINT, SIGTERM) never cuts publishing short: the checks, the swap and the clean-up
  run whole. Before the staging folder is removed, Spark's running jobs are cancelled and waited for,
  so no task can re-create it.
- Object stores (S3, GCS, ABFS) have no atomic rename: there the move is a copy, the old marker is
  removed before anything else, and ``_PUBLISHED`` is written last. Readers must treat a folder
  without ``_PUBLISHED`` as incomplete (the table formats with commits, Delta, need no marker).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from spark_sensitivity.core.runtime import has_jvm
from spark_sensitivity.io.files import Files, files_for, glob_escape
from spark_sensitivity.io.provenance import utc_timestamp
from spark_sensitivity.io.session import runs_whole, stop_spark_work

__all__ = [
    "PUBLISHED",
    "AtomicOutput",
    "Publication",
    "PublishError",
    "check_not_input",
    "glob_escape",
    "publishing",
]

MARKER = "_PUBLISHED"
# Earlier versions wrote no marker: their manifests (select, embed, evaluate) identify them.
LEGACY_MARKERS = ("manifest.json", "_manifest.json", "evaluation.json")
# A staging folder or lock of another host is taken as dead only after this long.
STALE_SECONDS = 24 * 3600
LOCK_WAIT_SECONDS = 60.0
UNREADABLE_LOCK_SECONDS = 10.0
# The destinations this process published, in order: what an interrupted command reports.
PUBLISHED: list[str] = []


class PublishError(OSError):
    """The output could not be published; the message says what is where."""


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Owner:
    """Who made a staging folder, a moved-aside output or a lock: the run's host and process."""

    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> Owner:
        return cls(_host_tag(), os.getpid(), uuid.uuid4().hex[:12])

    @property
    def tag(self) -> str:
        return f"{self.host}-{self.pid}-{self.token}"

    @classmethod
    def parse(cls, tag: str) -> Owner | None:
        parts = tag.split("-")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])

    def is_dead(self, age_seconds: float) -> bool:
        if self.host != _host_tag():
            return age_seconds > STALE_SECONDS
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _input_base(path: str) -> str:
    """The folder an input path (possibly a glob like data/*.parquet) reads from."""
    cut = min((path.index(c) for c in "[]{}*?" if c in path), default=None)
    if cut is None:
        return path
    return path[:cut].rsplit("/", 1)[0] or "/"


def _inside(child: str, parent: str) -> bool:
    parent = parent.rstrip("/")
    return child == parent or child.startswith(parent + "/")


def check_not_input(files: Files, destination: str, inputs: dict[str, str]) -> None:
    """Refuses a destination that is an input, contains one or lies inside one (names the flag)."""
    dest = files.qualify(destination)
    for flag, source in inputs.items():
        base = files.qualify(_input_base(source))
        if dest == base:
            raise ValueError(f"--output {destination} is the input given as {flag}; choose another output")
        if _inside(base, dest):
            raise ValueError(
                f"--output {destination} contains the input {source} ({flag}); choose another output"
            )
        if _inside(dest, base):
            raise ValueError(
                f"--output {destination} is inside the input {source} ({flag}); choose another output"
            )


class AtomicOutput:
    """A destination folder that appears complete or not at all (see the module docstring)."""

    def __init__(
        self,
        spark: SparkSession | None,
        destination: str,
        overwrite: bool,
        inputs: dict[str, str] | None = None,
        files: Files | None = None,
    ):
        self.destination = destination.rstrip("/") or "/"
        if self.destination.rpartition("/")[2] in ("", ".", ".."):
            raise ValueError(f"--output {destination!r} must name a folder, not a root or '.' or '..'")
        self.overwrite = overwrite
        self.inputs = {flag: path for flag, path in (inputs or {}).items() if path}
        self._spark = spark
        self._files = files or files_for(spark, self.destination)
        self._owner = Owner.current()
        parent, _, name = self.destination.rpartition("/")
        self._parent = parent if parent or not self.destination.startswith("/") else "/"
        if not self._parent:
            self._parent = "."
        self._name = name
        self.staging = self._sibling(f"staging-{self._owner.tag}")
        self._replaced = self._sibling(f"replaced-{self._owner.tag}")
        self._lock_path = self._sibling("lock")

    def _sibling(self, kind: str) -> str:
        return f"{self._parent.rstrip('/')}/.{self._name}.{kind}"

    @property
    def uri(self) -> str:
        """The destination as a fully qualified URI (what a catalog table must point at)."""
        qualified = self._files.qualify(self.destination)
        return f"file:{qualified}" if qualified.startswith("/") else qualified

    def exists(self) -> bool:
        return self._files.exists(self.destination)

    def path(self, relative: str) -> str:
        """Where a part of the output is written (the staging folder until published)."""
        return f"{self.staging}/{relative}"

    def final_uri(self, relative: str) -> str:
        """Where a part of the output lives once published, as a fully qualified URI."""
        return f"{self.uri}/{relative}"

    def read_path(self, relative: str) -> str:
        """:meth:`path` escaped for Spark's readers, which treat [, {, * and ? as a pattern."""
        return glob_escape(self.path(relative))

    @runs_whole
    def check_destination(self) -> None:
        """Fails before any work when publishing could not or must not happen; tidies dead runs."""
        check_not_input(self._files, self.destination, self.inputs)
        with self._lock():
            self._recover_dead_runs()
            self._check_replaceable()
        if self._spark is not None and not has_jvm(self._spark):
            self._check_server_sees_our_files()

    def _check_server_sees_our_files(self) -> None:
        """Over Spark Connect, the server writes the parts and this client moves them: both must see
        one file system. A probe file written here must read back through the server."""
        probe = self._sibling(f"probe-{self._owner.tag}")
        # Spark skips hidden files and folders when reading: the token sits in a visible subfolder.
        self._files.write_bytes(f"{probe}/token/token.txt", self._owner.token.encode())
        try:
            seen = self._spark.read.text(glob_escape(f"{probe}/token")).first()
        except Exception:  # the server cannot read the path at all
            seen = None
        finally:
            self._files.delete(probe)
        if seen is None or seen[0] != self._owner.token:
            raise ValueError(
                f"the Spark Connect server does not see {self._parent} as this client does; over Connect, "
                "--output must be on storage both see (this machine, or a shared mount)"
            )

    def _check_replaceable(self) -> None:
        if not self._files.exists(self.destination):
            return
        target = self._files.link_target(self.destination)
        if target is not None:
            raise FileExistsError(
                f"output {self.destination} is a symbolic link (to {target}); refusing to publish through "
                "it: give the folder itself as --output"
            )
        if not self._files.is_dir(self.destination):
            raise FileExistsError(
                f"output {self.destination} is a file, not a folder written by spark-sensitivity; "
                "refusing to replace it"
            )
        if not self.overwrite:
            raise FileExistsError(f"output {self.destination} already exists; pass --overwrite to replace it")
        children = set(self._files.children(self.destination))
        if not children & {MARKER, *LEGACY_MARKERS}:
            raise FileExistsError(
                f"output {self.destination} exists and is not an output of spark-sensitivity (it has no "
                f"{MARKER} or manifest); --overwrite replaces only earlier outputs of this tool"
            )

    def write_bytes(self, relative: str, data: bytes) -> None:
        self._files.write_bytes(self.path(relative), data)

    def write_text(self, relative: str, text: str) -> None:
        self.write_bytes(relative, text.encode("utf-8"))

    def write_json(self, relative: str, value: Any) -> None:
        self.write_text(relative, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")

    @runs_whole
    def publish(self) -> None:
        """Moves the staging folder into place, replacing an earlier output only when allowed."""
        files = self._files
        if not files.exists(self.staging):
            raise PublishError(f"internal error: nothing was staged for {self.destination}")
        marker = json.dumps(
            {"tool": "spark-sensitivity", "run": self._owner.token, "published": utc_timestamp()}
        )
        with self._lock():
            self._check_replaceable()
            had_old = files.exists(self.destination)
            if files.atomic_rename:
                files.write_bytes(f"{self.staging}/{MARKER}", marker.encode())
            elif had_old and files.exists(f"{self.destination}/{MARKER}"):
                files.delete(f"{self.destination}/{MARKER}")  # readers stop trusting it first
            if had_old:
                self._rename(self.destination, self._replaced, "move the old output {src} aside")
            try:
                self._rename(self.staging, self.destination, "move the finished output into {dst}")
            except PublishError:
                if had_old:
                    self._restore_old()
                raise
            if not files.atomic_rename:
                files.write_bytes(f"{self.destination}/{MARKER}", marker.encode())
            if had_old:
                # Should this fail, the next run removes the leftover as a dead run's.
                with contextlib.suppress(OSError):
                    files.delete(self._replaced)
        PUBLISHED.append(self.destination)

    def _rename(self, src: str, dst: str, what: str) -> None:
        try:
            self._files.rename(src, dst)
        except OSError as error:
            reason = error.strerror or str(error)
            raise PublishError(
                f"could not {what.format(src=src, dst=dst)} ({reason}); the existing output is unchanged "
                "and nothing was published"
            ) from error

    def _restore_old(self) -> None:
        try:
            self._files.rename(self._replaced, self.destination)
        except OSError as error:
            raise PublishError(
                f"could not publish {self.destination}, and the old output could not be put back: it is "
                f"whole at {self._replaced} ({error.strerror or error})"
            ) from error

    @runs_whole
    def abort(self) -> None:
        """Removes the staging folder; the destination is untouched."""
        if self._files.exists(self.staging):
            self._files.delete(self.staging)

    # Dead runs and the lock.

    def _recover_dead_runs(self) -> None:
        """Removes dead runs' staging folders; puts back an old output a dead run had moved aside."""
        prefix = f".{self._name}."
        for child in self._files.children(self._parent):
            if not child.startswith(prefix):
                continue
            kind, _, tag = child[len(prefix) :].partition("-")
            if kind not in ("staging", "replaced", "probe"):
                continue
            full = f"{self._parent.rstrip('/')}/{child}"
            owner = Owner.parse(tag)
            age = self._files.age_seconds(full)
            dead = owner.is_dead(age) if owner is not None else age > STALE_SECONDS
            if not dead:
                continue
            if kind == "replaced" and not self._files.exists(self.destination):
                self._files.rename(full, self.destination)
            else:
                self._files.delete(full)

    def _lock(self) -> _Lock:
        return _Lock(self._files, self._lock_path, self._owner, self.destination)


@dataclass
class Publication:
    """A job's output while it is being built: the parts go under ``output``, the job sets
    ``manifest``, and ``on_abort`` registers what else to undo should the job fail (a table commit)."""

    output: AtomicOutput
    manifest: dict[str, Any] | None = None
    undo: list[Callable[[], None]] = field(default_factory=list)

    def on_abort(self, undo: Callable[[], None]) -> None:
        self.undo.append(undo)


@contextlib.contextmanager
@runs_whole
def publishing(
    spark: SparkSession | None,
    destination: str,
    overwrite: bool,
    inputs: dict[str, str | None] | None = None,
    *,
    manifest_name: str = "manifest.json",
) -> Iterator[Publication]:
    """Checks ``destination`` before any work, then publishes what the block staged plus its manifest,
    whole; on any exception, undoes the registered steps (in order) and removes the staging folder.
    Spark's running jobs are waited for first (cancelled first on an interrupt). An interrupt never
    stops this function's own steps half-way (the block it runs can be)."""
    out = AtomicOutput(spark, destination, overwrite, inputs=inputs)
    out.check_destination()
    publication = Publication(out)
    try:
        yield publication
        if publication.manifest is None:
            raise PublishError(f"internal error: no manifest was made for {destination}")
        out.write_json(manifest_name, publication.manifest)
        out.publish()
    except BaseException as error:
        # A task of a failed or cancelled job may still be writing into staging: wait for it.
        stop_spark_work(spark, cancel=not isinstance(error, Exception))
        for undo in publication.undo:
            undo()
        out.abort()
        raise


class _Lock:
    """An exclusive lock file next to the destination; a dead holder's lock is broken."""

    def __init__(self, files: Files, path: str, owner: Owner, destination: str):
        self._files, self._path, self._owner, self._destination = files, path, owner, destination

    def __enter__(self) -> _Lock:
        content = json.dumps({"owner": self._owner.tag, "created": utc_timestamp()}).encode()
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not self._files.create_exclusive(self._path, content):
            if self._holder_is_dead():
                self._files.delete(self._path)
                continue
            if time.monotonic() > deadline:
                raise PublishError(
                    f"another run is publishing to {self._destination} (lock {self._path}); try again "
                    "later, or delete the lock if no run is active"
                )
            time.sleep(0.2)
        return self

    def _holder_is_dead(self) -> bool:
        try:
            holder = Owner.parse(json.loads(self._files.read_bytes(self._path))["owner"])
            age = self._files.age_seconds(self._path)
        except (OSError, ValueError, KeyError, TypeError):
            # Just removed, or being written; a lock that stays unreadable was left by a crash.
            try:
                return self._files.age_seconds(self._path) > UNREADABLE_LOCK_SECONDS
            except OSError:
                return False
        return holder is not None and holder.is_dead(age)

    def __exit__(self, *exc: object) -> None:
        self._files.delete(self._path)
