"""Accepted records, durable before the answer: JSON lines appended to the landing folder that `ingest` reads.

Each dataset's records go to a file being written, hidden from `ingest` by its leading dot
(``<landing>/events/.serve-<time>-<writer>-<id>.jsonl``, ``<writer>`` naming the process that writes it,
which holds a lock on it). A write waits until its lines are flushed and fsynced;
writes that arrive meanwhile share the next fsync (group commit), so a busy server pays one fsync per batch,
not per request. Every ``publish_seconds`` the file is closed, fsynced and renamed to its visible name
(``serve-<time>-<id>.jsonl``), which `ingest` then takes exactly once. A server killed mid-file leaves a
hidden file of whole, fsynced lines (a torn last line is cut off): the next start publishes it (a file still
locked by a live writer, another worker's, is left alone).

The worker processes of one server (``serve.workers``) see each other's records through the same files:
:class:`SiblingRecords` reads what the others appended since the server started, before each block of
requests is scored, so an event one worker accepted holds on the next request whichever worker answers it.

>>> writer = LandingWriter("/data/landing", publish_seconds=10)      # doctest: +SKIP
>>> writer.append("events", ['{"userId": "u1", ...}'])                # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path

from recsys_spark.errors import UserError

log = logging.getLogger(__name__)
FOLDERS = {"interactions": "events", "users": "users", "items": "items"}
STAMP = "%Y%m%dT%H%M%S"  # the time in a landing file's name (UTC): names sort by it


class LandingWriter:
    """Appends lines per dataset in one writer thread; :meth:`append` returns a future done once durable."""

    def __init__(self, landing: str, publish_seconds: float = 10.0):
        if "://" in landing and not landing.startswith("file:"):
            raise UserError(f"serve writes events to a local landing folder (ingest.landing); {landing} is not "
                            "local: mount it, or point ingest.landing at a local folder that is shipped to it")
        self.root = Path(landing.removeprefix("file:"))
        self.publish_seconds = publish_seconds
        self.writer = uuid.uuid4().hex[:12]
        self._queue: queue.Queue = queue.Queue()
        self._open: dict[str, tuple[Path, object, float]] = {}
        self.appended = 0
        for dataset, folder in FOLDERS.items():
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            for stale in (self.root / folder).glob(".serve-*.jsonl"):
                self._publish_stale(stale)
        self._thread = threading.Thread(target=self._run, name="landing-writer", daemon=True)
        self._thread.start()

    def append(self, dataset: str, lines: list[str]) -> Future:
        """Queue ``lines`` (JSON, no new lines inside) for ``dataset``; the future completes when they are on
        disk (or fails with the error that kept them off it)."""
        done: Future = Future()
        self._queue.put((dataset, lines, done))
        return done

    def close(self) -> None:
        """Write what is queued, publish every open file and stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=max(0.05, self.publish_seconds / 4))
            except queue.Empty:
                first = ()
            batch = [first] if first else []
            while not self._queue.empty():  # everything waiting shares this write and its fsync
                batch.append(self._queue.get_nowait())
            stop = None in batch or first is None
            self._write([b for b in batch if b])
            self._publish_due(force=stop)
            if stop:
                return

    def _write(self, batch: list[tuple[str, list[str], Future]]) -> None:
        touched = {}
        try:
            for dataset, lines, _ in batch:
                path, handle, _ = self._file(dataset)
                handle.write("".join(line + "\n" for line in lines).encode("utf-8"))
                touched[dataset] = handle
            for handle in touched.values():
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as e:
            for _, _, done in batch:
                done.set_exception(e)
            return
        for _, lines, done in batch:
            self.appended += len(lines)
            done.set_result(len(lines))

    def _file(self, dataset: str):
        if dataset not in self._open:
            name = f".serve-{time.strftime(STAMP, time.gmtime())}-{self.writer}-{uuid.uuid4().hex[:8]}.jsonl"
            path = self.root / FOLDERS[dataset] / name
            handle = open(path, "ab")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # "in use": a sibling's start must not publish it
            self._open[dataset] = (path, handle, time.monotonic())
        return self._open[dataset]

    def _publish_due(self, force: bool = False) -> None:
        for dataset, (path, handle, opened) in list(self._open.items()):
            if force or time.monotonic() - opened >= self.publish_seconds:
                handle.close()
                del self._open[dataset]
                self._publish(path)

    @classmethod
    def _publish_stale(cls, hidden: Path) -> None:
        """Publish a hidden file left by a killed writer; one a live writer holds is left alone."""
        try:
            with open(hidden, "rb") as probe:
                fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                cls._publish(hidden)
        except (BlockingIOError, FileNotFoundError):
            pass  # another worker of this server is writing it, or another starting worker published it

    @staticmethod
    def _publish(hidden: Path) -> None:
        """Cut a torn last line, then give the file its visible name (an atomic rename) and fsync the folder."""
        data = hidden.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(hidden, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
                os.fsync(f.fileno())
        if hidden.stat().st_size == 0:
            hidden.unlink()
            return
        hidden.rename(hidden.with_name(hidden.name.removeprefix(".")))
        folder = os.open(hidden.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


class SiblingRecords:
    """The records other writers (the other worker processes of this server) appended to the landing folder
    since ``since`` (epoch seconds, the server's start), read incrementally: :meth:`poll` returns the records
    that appeared since its last call, per dataset. A file is followed by its inode, so its publication (a
    rename) neither loses nor repeats lines; only whole lines are read.

    Cheap to call per block of requests: a folder is listed again only when its modification time changed,
    and each file being written costs one ``fstat``."""

    def __init__(self, landing: Path, own_writer: str, since: float):
        self.root, self.own, self.since = landing, own_writer, time.strftime(STAMP, time.gmtime(since))
        self._listed: dict[str, int] = {}
        self._open: dict[int, list] = {}  # inode -> [fd, offset, dataset, published]
        self._done: set[int] = set()

    def poll(self) -> dict[str, list[dict]]:
        for dataset, folder in FOLDERS.items():
            self._list(dataset, self.root / folder)
        found: dict[str, list[dict]] = {}
        for inode, state in list(self._open.items()):
            fd, offset, dataset, published = state
            size = os.fstat(fd).st_size
            if size > offset:
                data = os.pread(fd, size - offset, offset)
                whole = data[:data.rfind(b"\n") + 1]
                state[1] += len(whole)
                found.setdefault(dataset, []).extend(json.loads(line) for line in whole.splitlines() if line)
            elif published:  # closed by its writer before the rename: nothing more will come
                os.close(fd)
                del self._open[inode]
                self._done.add(inode)
        return found

    def close(self) -> None:
        for fd, *_ in self._open.values():
            os.close(fd)
        self._open.clear()

    def _list(self, dataset: str, folder: Path) -> None:
        try:
            changed = os.stat(folder).st_mtime_ns
        except FileNotFoundError:
            return
        if self._listed.get(dataset) == changed:
            return
        self._listed[dataset] = changed
        for entry in os.scandir(folder):
            name = entry.name.removeprefix(".")
            # serve-<time>-<writer>-<id>.jsonl: another writer's, written since the server started
            parts = name.split("-")
            if len(parts) != 4 or parts[0] != "serve" or parts[2] == self.own or parts[1] < self.since:
                continue
            inode = entry.inode()
            if inode in self._done:
                continue
            if inode not in self._open:
                try:
                    self._open[inode] = [os.open(entry.path, os.O_RDONLY), 0, dataset, False]
                except FileNotFoundError:
                    continue  # renamed meanwhile: the next listing finds it
            self._open[inode][3] = not entry.name.startswith(".")
