"""File operations for publishing: the OS for local paths, the Hadoop FileSystem for the others.

Local (and mounted) paths go through the OS, not Hadoop's local file system: rename(2) is atomic and
fails on a mount point or an immutable folder, where Hadoop's rename falls back to copy-then-delete.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any, Protocol
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from spark_sensitivity.core.runtime import has_jvm

GLOB_CHARS = "[]{}*?\\"
# Schemes whose directory rename is atomic; elsewhere (object stores) the move is a copy.
ATOMIC_RENAME_SCHEMES = ("file", "hdfs", "viewfs")


def glob_escape(path: str) -> str:
    """``path`` with Hadoop's glob characters escaped, for reading a folder of ours by its exact name."""
    return "".join("\\" + c if c in GLOB_CHARS else c for c in path)


class Files(Protocol):
    """The few file operations publishing needs, each on a full path."""

    atomic_rename: bool

    def qualify(self, path: str) -> str: ...
    def exists(self, path: str) -> bool: ...
    def is_dir(self, path: str) -> bool: ...
    def link_target(self, path: str) -> str | None: ...
    def children(self, path: str) -> list[str]: ...
    def age_seconds(self, path: str) -> float: ...
    def rename(self, src: str, dst: str) -> None: ...
    def delete(self, path: str) -> None: ...
    def write_bytes(self, path: str, data: bytes) -> None: ...
    def read_bytes(self, path: str) -> bytes: ...
    def create_exclusive(self, path: str, data: bytes) -> bool: ...


class LocalFiles:
    """A local or mounted file system, through the OS: rename(2) is atomic and never copies."""

    atomic_rename = True

    def qualify(self, path: str) -> str:
        local = path[len("file:") :] if path.startswith("file:") else path
        while local.startswith("//"):
            local = local[1:]
        return os.path.realpath(os.path.abspath(local))

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path) and not os.path.islink(path)

    def link_target(self, path: str) -> str | None:
        return os.readlink(path) if os.path.islink(path) else None

    def children(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def age_seconds(self, path: str) -> float:
        return time.time() - os.lstat(path).st_mtime

    def rename(self, src: str, dst: str) -> None:
        if os.path.lexists(dst):  # rename(2) would replace an empty folder or a file
            raise FileExistsError(errno.EEXIST, "exists", dst)
        os.rename(src, dst)

    def delete(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            for root, dirs, files in os.walk(path, topdown=False):
                for name in files:
                    os.unlink(os.path.join(root, name))
                for name in dirs:
                    full = os.path.join(root, name)
                    os.unlink(full) if os.path.islink(full) else os.rmdir(full)
            os.rmdir(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def write_bytes(self, path: str, data: bytes) -> None:
        _make_folder(os.path.dirname(path))
        with open(path, "wb") as stream:
            stream.write(data)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as stream:
            return stream.read()

    def create_exclusive(self, path: str, data: bytes) -> bool:
        _make_folder(os.path.dirname(path))
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        return True


def _make_folder(folder: str) -> None:
    """``os.makedirs``, with one line naming the file that stands where a folder must be."""
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        path = os.path.abspath(folder)
        while path != os.path.dirname(path):
            if os.path.lexists(path) and not os.path.isdir(path):
                where = "" if path == os.path.abspath(folder) else f"cannot create the folder {folder}: "
                raise FileExistsError(f"{where}{path} is a file, not a folder") from None
            path = os.path.dirname(path)
        raise


class HadoopFiles:
    """Any Hadoop file system (HDFS, S3A, GCS, ABFS), through the JVM of a classic session."""

    def __init__(self, spark: SparkSession, example: str):
        jvm = spark.sparkContext._jvm
        self._Path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._Path(example).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        self.atomic_rename = str(self._fs.getUri().getScheme()) in ATOMIC_RENAME_SCHEMES

    def qualify(self, path: str) -> str:
        return str(self._fs.makeQualified(self._Path(path)).toString())

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._Path(path)))

    def is_dir(self, path: str) -> bool:
        return self.exists(path) and bool(self._fs.getFileStatus(self._Path(path)).isDirectory())

    def link_target(self, path: str) -> str | None:
        try:
            status = self._fs.getFileLinkStatus(self._Path(path))
            return str(status.getSymlink().toString()) if status.isSymlink() else None
        except Exception:  # no such path, or a file system without links
            return None

    def children(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        return sorted(str(s.getPath().getName()) for s in self._fs.listStatus(self._Path(path)))

    def age_seconds(self, path: str) -> float:
        return time.time() - self._fs.getFileStatus(self._Path(path)).getModificationTime() / 1000.0

    def rename(self, src: str, dst: str) -> None:
        # FileSystem.rename moves src INTO dst when dst is a folder: check first, under the lock.
        if self.exists(dst):
            raise FileExistsError(errno.EEXIST, "exists", dst)
        if not self._fs.rename(self._Path(src), self._Path(dst)):
            raise OSError(errno.EIO, "rename refused", dst)

    def delete(self, path: str) -> None:
        self._fs.delete(self._Path(path), True)

    def write_bytes(self, path: str, data: bytes) -> None:
        stream = self._fs.create(self._Path(path), True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def read_bytes(self, path: str) -> bytes:
        stream = self._fs.open(self._Path(path))
        try:
            return bytes(self._read_all(stream))
        finally:
            stream.close()

    @staticmethod
    def _read_all(stream: Any) -> bytearray:
        data = bytearray()
        byte = stream.read()
        while byte != -1:
            data.append(byte)
            byte = stream.read()
        return data

    def create_exclusive(self, path: str, data: bytes) -> bool:
        try:
            stream = self._fs.create(self._Path(path), False)
        except Exception as error:  # FileAlreadyExistsException through py4j
            if "AlreadyExists" in str(error) or self.exists(path):
                return False
            raise
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()
        return True


def is_local_path(path: str) -> bool:
    return urlparse(path).scheme in ("", "file") or (len(path) > 1 and path[1] == ":")


def files_for(spark: SparkSession | None, path: str) -> Files:
    """The file operations for ``path``: the OS for local paths, else the Hadoop FileSystem."""
    if spark is None or not has_jvm(spark):
        if not is_local_path(path):
            raise ValueError(
                f"over Spark Connect, {path} cannot be published: this client reaches only local paths "
                "(this machine or a mount the server shares), not a Hadoop file system"
            )
        return LocalFiles()
    hadoop = HadoopFiles(spark, path)
    if str(hadoop._fs.getUri().getScheme()) == "file":
        return LocalFiles()
    return hadoop
