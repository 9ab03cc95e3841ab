"""Accepted records, durable before the answer: JSON lines appended to the landing folder that `ingest` reads.

Each dataset's records go to a file being written, hidden from `ingest` by its leading dot
(``<landing>/events/.serve-<time>-<id>.jsonl``). A write waits until its lines are flushed and fsynced;
writes that arrive meanwhile share the next fsync (group commit), so a busy server pays one fsync per batch,
not per request. Every ``publish_seconds`` the file is closed, fsynced and renamed to its visible name
(``serve-<time>-<id>.jsonl``), which `ingest` then takes exactly once. A server killed mid-file leaves a
hidden file of whole, fsynced lines (a torn last line is cut off): the next start publishes it.

>>> writer = LandingWriter("/data/landing", publish_seconds=10)      # doctest: +SKIP
>>> writer.append("events", ['{"userId": "u1", ...}'])                # doctest: +SKIP
"""

from __future__ import annotations

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


class LandingWriter:
    """Appends lines per dataset in one writer thread; :meth:`append` returns a future done once durable."""

    def __init__(self, landing: str, publish_seconds: float = 10.0):
        if "://" in landing and not landing.startswith("file:"):
            raise UserError(f"serve writes events to a local landing folder (ingest.landing); {landing} is not "
                            "local: mount it, or point ingest.landing at a local folder that is shipped to it")
        self.root = Path(landing.removeprefix("file:"))
        self.publish_seconds = publish_seconds
        self._queue: queue.Queue = queue.Queue()
        self._open: dict[str, tuple[Path, object, float]] = {}
        self.appended = 0
        for dataset, folder in FOLDERS.items():
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            for stale in (self.root / folder).glob(".serve-*.jsonl"):
                self._publish(stale)  # left by a killed server: whole lines only
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
            name = f".serve-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}.jsonl"
            path = self.root / FOLDERS[dataset] / name
            self._open[dataset] = (path, open(path, "ab"), time.monotonic())
        return self._open[dataset]

    def _publish_due(self, force: bool = False) -> None:
        for dataset, (path, handle, opened) in list(self._open.items()):
            if force or time.monotonic() - opened >= self.publish_seconds:
                handle.close()
                del self._open[dataset]
                self._publish(path)

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
