"""The sandbox's file system: ``sbx.files.write(path, data)``, ``read``, ``list``, ``watch_dir``...

Paths are absolute or relative to ``/home/sandbox`` and are resolved by the sandbox's agent
inside the sandbox (so ``..`` and symlinks never leave it). Transfers stream in both
directions: ``write`` sends a file object or an iterator of chunks without loading it whole,
and ``read(format="stream")`` yields the file in chunks as they arrive.
"""

from __future__ import annotations

import builtins
import http.client
import io
import os
import posixpath
import socket
import stat
import threading
from dataclasses import dataclass
from typing import (IO, Any, Callable, Dict, Iterable, Iterator, List, Literal, Mapping,
                    Optional, Sequence, Tuple, Union, overload)

from ._stream import EventStream
from ._transport import RawBody, Transport, sandbox_path
from .exceptions import NotFoundError, SandboxError, TimeoutError

__all__ = ["Files", "EntryInfo", "WriteEntry", "FilesystemEvent", "WatchHandle", "FileStream"]

# Bytes read from a file object or from the answer per chunk.
_CHUNK = 256 * 1024

WriteData = Union[str, bytes, bytearray, memoryview, IO[bytes], IO[str], Iterable[bytes]]


@dataclass(frozen=True)
class EntryInfo:
    """A file system entry as the sandbox sees it (``lstat``: a symlink is described, not
    followed).

    Attributes:
        name: the last path component.
        path: the absolute, normalized path.
        type: ``"file"``, ``"dir"``, ``"symlink"`` or ``"other"``.
        size: size in bytes.
        mode: the permission bits as an integer (e.g. ``0o644``).
        permissions: like ``"-rw-r--r--"``.
        owner, group: user and group names.
        modified_time: the modification time as the engine wrote it (RFC 3339).
        symlink_target: where a symlink points; None for anything else.
    """

    name: str
    path: str
    type: str
    size: int = 0
    mode: int = 0
    permissions: str = ""
    owner: str = ""
    group: str = ""
    modified_time: Optional[str] = None
    symlink_target: Optional[str] = None

    @classmethod
    def from_json(cls, doc: Any) -> "EntryInfo":
        """Builds it from the engine's JSON entry."""
        if not isinstance(doc, dict) or not isinstance(doc.get("path"), str):
            raise SandboxError(f"unexpected file entry from the engine: {str(doc)[:200]}")

        def s(k: str, default: str = "") -> str:
            v = doc.get(k)
            return v if isinstance(v, str) else default

        def n(k: str) -> int:
            v = doc.get(k)
            return v if isinstance(v, int) and not isinstance(v, bool) else 0

        mtime, target = doc.get("modified_time"), doc.get("symlink_target")
        return cls(name=s("name") or posixpath.basename(doc["path"]), path=doc["path"],
                   type=s("type", "other"), size=n("size"), mode=n("mode"),
                   permissions=s("permissions"), owner=s("owner"), group=s("group"),
                   modified_time=mtime if isinstance(mtime, str) else None,
                   symlink_target=target if isinstance(target, str) else None)


@dataclass(frozen=True)
class WriteEntry:
    """One file for ``write_files``: a path and its content (anything ``write`` accepts)."""

    path: str
    data: WriteData


@dataclass(frozen=True)
class FilesystemEvent:
    """A change seen by ``watch_dir``.

    Attributes:
        type: ``"create"``, ``"write"``, ``"remove"``, ``"chmod"`` or ``"rename"``.
        path: the absolute path of the entry (for a rename, its old path).
        new_path: for a rename, the new path; None otherwise.
    """

    type: str
    path: str
    new_path: Optional[str] = None

    @property
    def name(self) -> str:
        """The last component of ``path``."""
        return posixpath.basename(self.path)


class FileStream:
    """The chunks of a file being downloaded: iterate it for ``bytes``.

    The connection is closed at the end, by ``close()`` or when leaving a ``with`` block.
    """

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 what: str) -> None:
        self._conn = conn
        self._resp = resp
        self._what = what
        self._done = False

    def __iter__(self) -> "FileStream":
        return self

    def __next__(self) -> bytes:
        chunk = self.read_chunk()
        if not chunk:
            raise StopIteration
        return chunk

    def read_chunk(self) -> bytes:
        """Returns the next chunk, or b"" at the end of the file."""
        if self._done:
            return b""
        try:
            chunk = self._resp.read(_CHUNK)
        except (socket.timeout, builtins.TimeoutError) as e:
            self.close()
            raise TimeoutError(f"reading {self._what} timed out") from e
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise SandboxError(f"reading {self._what} failed: {e!r}") from e
        if chunk:
            return chunk
        left = self._resp.length
        self.close()
        if left:
            raise SandboxError(f"reading {self._what}: the connection closed {left} bytes "
                               "before the end of the file")
        return b""

    def close(self) -> None:
        """Stops the download and closes the connection."""
        self._done = True
        self._conn.close()

    def __enter__(self) -> "FileStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class WatchHandle:
    """A live watch of a directory (from ``files.watch_dir``).

    A daemon thread collects the events; ``get_new_events()`` returns those not returned
    before, ``on_event`` (if given) is called with each as it arrives, and ``stop()`` ends the
    watch.
    """

    def __init__(self, stream: EventStream, path: str,
                 on_event: Optional[Callable[[FilesystemEvent], Any]]) -> None:
        self._stream = stream
        self._path = path
        self._on_event = on_event
        self._lock = threading.Lock()
        self._events: List[FilesystemEvent] = []
        self._error: Optional[BaseException] = None
        self._stopped = False
        self._thread = threading.Thread(target=self._read, name=f"ai2in-watch-{path}",
                                        daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for ev in self._stream:
                t = ev["type"]
                if t == "error":
                    raise SandboxError(f"watching {self._path} failed: "
                                       f"{ev.get('message') or 'unknown error'}")
                p = ev.get("path")
                if t == "start" or not isinstance(p, str):
                    continue
                np = ev.get("new_path")
                fe = FilesystemEvent(type=t, path=p, new_path=np if isinstance(np, str) else None)
                with self._lock:
                    self._events.append(fe)
                if self._on_event is not None:
                    self._on_event(fe)
            if not self._stream.closed:
                raise SandboxError(f"the watch of {self._path} ended (was the directory "
                                   "removed?)")
        except BaseException as e:  # noqa: BLE001 - reported by get_new_events
            with self._lock:
                self._error = e
        finally:
            self._stream.close()

    @property
    def running(self) -> bool:
        """True while the watch is live (not stopped, no error)."""
        return self._thread.is_alive()

    def get_new_events(self) -> List[FilesystemEvent]:
        """Returns the events that arrived since the last call, oldest first.

        Raises:
            SandboxError: the watch failed (once the events before the failure are returned).
        """
        with self._lock:
            out, self._events = self._events, []
            if not out and self._error is not None and not self._stopped:
                err, self._error = self._error, None
                raise err
        return out

    def stop(self) -> None:
        """Ends the watch (idempotent)."""
        self._stopped = True
        self._stream.close()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> "WatchHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _query(path: str, user: Optional[str], *extra: Tuple[str, str]) -> List[Tuple[str, str]]:
    """The query of a files route: path, user (when given) and the route's own fields."""
    q = [("path", path)]
    if user is not None:
        q.append(("user", user))
    return q + list(extra)


class Files:
    """The ``files`` namespace of a sandbox."""

    def __init__(self, sandbox_id: str, transport: Transport) -> None:
        self._sandbox_id = sandbox_id
        self._transport = transport

    def _path(self, suffix: str = "") -> str:
        return sandbox_path(self._sandbox_id, "/files" + suffix)

    @overload
    def read(self, path: str, format: Literal["text"] = "text", user: Optional[str] = None) -> str: ...

    @overload
    def read(self, path: str, format: Literal["bytes"], user: Optional[str] = None) -> bytes: ...

    @overload
    def read(self, path: str, format: Literal["stream"], user: Optional[str] = None) -> FileStream: ...

    def read(self, path: str, format: str = "text", user: Optional[str] = None
             ) -> Union[str, bytes, FileStream]:
        """Reads a file.

        Args:
            path: absolute, or relative to ``/home/sandbox``.
            format: ``"text"`` (decoded as UTF-8, invalid bytes replaced), ``"bytes"``, or
                ``"stream"``: an iterator of ``bytes`` chunks that downloads as it is
                iterated (close it, or use it in a ``with`` block, to stop early).
            user: read with this user's permissions (default ``root``).

        Raises:
            NotFoundError: no such file.
            InvalidArgumentError: the path is a directory, empty or has a NUL.
        """
        if format not in ("text", "bytes", "stream"):
            raise ValueError(f"format must be 'text', 'bytes' or 'stream', not {format!r}")
        conn, resp = self._transport.open_download("GET", self._path(), query=_query(path, user))
        stream = FileStream(conn, resp, f"{path} in {self._sandbox_id}")
        if format == "stream":
            return stream
        data = b"".join(stream)
        return data.decode("utf-8", "replace") if format == "text" else data

    def write(self, path: str, data: WriteData, user: Optional[str] = None) -> EntryInfo:
        """Writes a file, creating missing parent directories; replaces it atomically (a
        reader never sees half a file; a failed upload leaves the old content).

        Args:
            path: absolute, or relative to ``/home/sandbox``.
            data: ``str`` (written as UTF-8), ``bytes``, a file object opened for reading
                (sent in chunks from its current position, never loaded whole), or an
                iterator of ``bytes`` chunks (sent with chunked transfer encoding).
            user: write with this user's permissions, as its owner (default ``root``); a
                user who may not write there gets a SandboxError with status 403.

        Returns:
            EntryInfo of the written file.

        Raises:
            InvalidArgumentError: the path is a directory, a parent is a file, the path is
                empty or has a NUL.
        """
        query = [("path", path)] + ([("user", user)] if user is not None else [])
        doc = self._transport.request("PUT", self._path(), query=query, raw=_raw_body(data))
        return EntryInfo.from_json(doc)

    def write_files(self, files: Sequence[Union[WriteEntry, Mapping[str, Any],
                                                Tuple[str, WriteData]]],
                    user: Optional[str] = None) -> List[EntryInfo]:
        """Writes several files, one after the other; each as ``write`` would.

        Args:
            files: ``WriteEntry(path, data)`` objects, ``{"path": ..., "data": ...}`` dicts or
                ``(path, data)`` pairs.
            user: who owns the files (default ``root``).

        Returns:
            The EntryInfo of each file, in order.
        """
        out = []
        for f in files:
            if isinstance(f, WriteEntry):
                path, data = f.path, f.data
            elif isinstance(f, Mapping):
                path, data = f["path"], f["data"]
            else:
                path, data = f
            out.append(self.write(path, data, user=user))
        return out

    def get_info(self, path: str, user: Optional[str] = None) -> EntryInfo:
        """Describes a file, directory or symlink (not followed); ``user``: look with this
        user's permissions (default ``root``).

        Raises:
            NotFoundError: nothing there.
        """
        return EntryInfo.from_json(self._transport.request(
            "GET", self._path("/info"), query=_query(path, user)))

    def exists(self, path: str, user: Optional[str] = None) -> bool:
        """True if something (a file, directory, symlink...) is at ``path``."""
        try:
            self.get_info(path, user=user)
        except NotFoundError:
            return False
        return True

    def list(self, path: str, depth: int = 1, user: Optional[str] = None) -> List[EntryInfo]:
        """Lists a directory, sorted by path.

        Args:
            depth: 1 (the default) for the directory's own entries, up to 16 to descend
                into subdirectories (symlinked directories are not descended).
            user: list with this user's permissions (default ``root``).

        Raises:
            NotFoundError: no such directory.
            InvalidArgumentError: not a directory, or ``depth`` out of range.
        """
        doc = self._transport.request("GET", self._path("/list"),
                                      query=_query(path, user, ("depth", str(depth))))
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
            raise SandboxError(f"unexpected answer to a file list in {self._sandbox_id}: "
                               f"{str(doc)[:200]}")
        return [EntryInfo.from_json(e) for e in doc["entries"]]

    def make_dir(self, path: str, user: Optional[str] = None) -> bool:
        """Creates a directory and its missing parents.

        Returns:
            True if it was created, False if it already was a directory.

        Raises:
            ConflictError: a file is there.
        """
        body: Dict[str, Any] = {"path": path}
        if user is not None:
            body["user"] = user
        doc = self._transport.request("POST", self._path("/mkdir"), body=body)
        return bool(isinstance(doc, dict) and doc.get("created"))

    def rename(self, old_path: str, new_path: str, user: Optional[str] = None) -> EntryInfo:
        """Moves ``old_path`` to ``new_path`` (replacing a file there).

        Returns:
            EntryInfo of the entry at its new path.

        Raises:
            NotFoundError: nothing at ``old_path``.
        """
        body: Dict[str, Any] = {"from": old_path, "to": new_path}
        if user is not None:
            body["user"] = user
        return EntryInfo.from_json(
            self._transport.request("POST", self._path("/rename"), body=body))

    def remove(self, path: str, user: Optional[str] = None) -> None:
        """Removes a file, a symlink (not what it points to) or a directory with everything in
        it.

        Raises:
            NotFoundError: nothing there.
            InvalidArgumentError: ``path`` is ``/``.
        """
        self._transport.request("DELETE", self._path(), query=_query(path, user))

    def watch_dir(self, path: str, on_event: Optional[Callable[[FilesystemEvent], Any]] = None,
                  recursive: bool = False, user: Optional[str] = None) -> WatchHandle:
        """Watches a directory for changes; returns once the watch is in place, so nothing
        that happens after this call is missed.

        Args:
            on_event: called with each FilesystemEvent as it arrives (on the watch's thread).
            recursive: watch subdirectories too, including ones created later.
            user: watch with this user's permissions (default ``root``).

        Raises:
            NotFoundError: no such directory.
            InvalidArgumentError: not a directory.
        """
        query = _query(path, user, *([("recursive", "true")] if recursive else []))
        stream = self._transport.open_stream("GET", self._path("/watch"), query=query)
        try:
            for ev in stream:
                if ev["type"] == "start":
                    break
                if ev["type"] == "error":
                    raise SandboxError(f"watching {path} in {self._sandbox_id} failed: "
                                       f"{ev.get('message') or 'unknown error'}")
            else:
                raise SandboxError(f"watching {path} in {self._sandbox_id}: the stream ended "
                                   "before the watch started")
        except BaseException:
            stream.close()
            raise
        return WatchHandle(stream, path, on_event)


def _raw_body(data: WriteData) -> RawBody:
    """The upload body for ``data`` (see ``Files.write``)."""
    if isinstance(data, str):
        return RawBody(data.encode("utf-8"))
    if isinstance(data, (bytes, bytearray, memoryview)):
        return RawBody(bytes(data) if isinstance(data, memoryview) else data)
    if hasattr(data, "read"):
        return _file_body(data)  # type: ignore[arg-type]
    if isinstance(data, Iterable):
        return RawBody(_chunks(iter(data)))
    raise TypeError(f"data must be str, bytes, a file object or an iterator of bytes, not "
                    f"{type(data).__name__}")


def _file_body(f: IO[Any]) -> RawBody:
    """A body read from a file object, with its remaining size when it can be known."""
    size: Optional[int] = None
    if not isinstance(f, io.TextIOBase):
        try:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode):
                size = max(st.st_size - f.tell(), 0)
        except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
            size = None
        if size is None:  # an in-memory or other seekable stream
            try:
                if f.seekable():
                    pos = f.tell()
                    size = max(f.seek(0, io.SEEK_END) - pos, 0)
                    f.seek(pos)
            except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
                size = None
    return RawBody(_file_chunks(f, size), length=size)


def _file_chunks(f: IO[Any], size: Optional[int]) -> Iterator[bytes]:
    left = size
    while left is None or left > 0:
        chunk = f.read(_CHUNK if left is None else min(_CHUNK, left))
        if not chunk:
            break
        b = chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
        if left is not None:
            left -= len(b)
        yield b
    if left:
        raise SandboxError(f"the file being uploaded shrank by {left} bytes while it was sent")


def _chunks(it: Iterator[Any]) -> Iterator[bytes]:
    for chunk in it:
        if isinstance(chunk, str):
            yield chunk.encode("utf-8")
        elif isinstance(chunk, (bytes, bytearray, memoryview)):
            yield bytes(chunk) if not isinstance(chunk, bytes) else chunk
        else:
            raise TypeError(f"the data iterator yielded {type(chunk).__name__}, not bytes")
