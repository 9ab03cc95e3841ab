"""Turns on a warehouse root: each job's on S3 (:func:`root_lock`), and each pipeline run's anywhere
(:func:`pipeline_turn`).

Delta's default log store on S3 cannot make a commit atomic across processes, so two jobs writing one table
at once from two Spark applications can lose a commit (Delta's DynamoDB log store fixes that inside Delta,
but its jar is not published where the install step can fetch it). With ``s3.lock_table`` set, every job
on an S3 root (import, ingest, train, batch, delete-users, maintain, export, evaluate) first takes that
root's item in the DynamoDB table, with a conditional write, and gives it back after its job record is
written; a second job waits for it (logging who holds it), then fails naming the holder after
``s3.lock_wait_minutes``. The holder renews its item every ``TTL_SECONDS / 3``; an item not renewed for
``TTL_SECONDS`` (a killed or frozen job elsewhere), or held by a process of this host that is gone, is
taken over. The table is created on first use (on-demand capacity, key ``root``).

A pipeline run holds a second turn for its whole run, so an overlapping schedule never runs two pipelines
on one root: the same expiring item (in ``s3.lock_table``, or as an S3 object written with conditional
writes), or on a local root an exclusive ``flock``.

>>> with root_lock(config, "import-20261130T2301-ab12cd", "import"):   # doctest: +SKIP
...     import_the_file()
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager

from recsys_spark.errors import ConcurrentJobError, RootBusyError, UserError

log = logging.getLogger(__name__)
TTL_SECONDS = 120.0
POLL_SECONDS = 2.0
S3_SCHEMES = ("s3://", "s3a://", "s3n://")
# Roots held by a thread of this process, and how many job_run levels hold each (a pipeline's steps run
# inside its turn); another thread's job waits like another process's.
_held: dict[tuple[str, int], int] = {}
_held_lock = threading.Lock()


def lock_applies(config) -> bool:
    """True when jobs on this config's root take turns: the root is on S3 and ``s3.lock_table`` is set."""
    return bool(config.s3.lock_table) and config.root.startswith(S3_SCHEMES)


def dynamodb(settings):
    """A DynamoDB client for ``s3.lock_table`` (region: ``s3.region``, else the AWS chain's)."""
    import boto3
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client("dynamodb", endpoint_url=settings.lock_endpoint or None,
                            region_name=settings.region or None)
    except NoRegionError as e:
        raise UserError(f"s3.lock_table {settings.lock_table}: no AWS region for DynamoDB; set s3.region "
                        f"(or AWS_REGION)") from e


@contextmanager
def root_lock(config, job_id: str, kind: str):
    """Hold the config's root for the body (nothing when :func:`lock_applies` is False)."""
    if not lock_applies(config):
        yield
        return
    root = config.root.rstrip("/")
    key = (root, threading.get_ident())
    with _held_lock:
        nested = bool(_held.get(key))
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    lock = _Lock(_DynamoItem(dynamodb(config.s3), config.s3.lock_table, root), root, job_id, kind)
    if holder := lock.take(config.s3.lock_wait_minutes * 60):
        raise ConcurrentJobError(
            f"{root}: job {holder['job_id']} ({holder['kind']}, host {holder['host']}, process {holder['pid']}) "
            f"held the root for all of s3.lock_wait_minutes; nothing was written by this job: run it again "
            f"when that one is done")
    with _held_lock:
        _held[key] = 1
    try:
        yield
        if lock.lost:
            raise ConcurrentJobError(f"{root}: this job ({job_id}) lost its turn on the root to {lock.lost} while "
                                     f"it ran (its lock in DynamoDB table {config.s3.lock_table} was not renewed "
                                     f"for {TTL_SECONDS:.0f} s); check the job's output, then run it again")
    finally:
        with _held_lock:
            _held.pop(key, None)
        lock.give_back()


@contextmanager
def pipeline_turn(config, run_id: str, wait_minutes: float = 0.0, spark=None):
    """Hold the root's pipeline turn for the body: one pipeline run per root at a time. Another run holding
    it is waited for up to ``wait_minutes``, then a :class:`RootBusyError` names it.

    Local roots: an exclusive ``flock`` on ``<root>/_locks/pipeline.lock``; the system lets go of it when its
    process ends, however it ends, so a killed run never leaves a stale lock. S3 roots: an item in
    ``s3.lock_table`` (key ``<root>#pipeline``) or, without one, the object ``<root>/_locks/pipeline.json``
    created with S3's conditional writes; either names its holder and an expiry, renewed every
    ``TTL_SECONDS / 3``, and is taken over once expired (a killed run: after ``TTL_SECONDS``) or at once when
    its process, on this host, is gone. ``spark``: where S3's endpoint is set only in the session's Hadoop
    configuration (``fs.s3a.endpoint``), the S3 object is written there too.

    >>> with pipeline_turn(config, "pipeline-20261201T0200-ab12cd", wait_minutes=30):   # doctest: +SKIP
    ...     run_the_steps()
    """
    root = config.root.rstrip("/")
    if (folder := local_folder(root)) is not None:
        holder = {"job_id": run_id, "kind": "pipeline"}
        with file_turn(f"{folder}/_locks/pipeline.lock", holder, wait_minutes * 60,
                       lambda other: _busy(root, other, wait_minutes),
                       lambda other: log.warning("%s: pipeline run %s holds the root; waiting for it", root,
                                                 other.get("job_id"))):
            yield
        return
    if not root.startswith(S3_SCHEMES):
        log.warning("%s: no pipeline run lock on this file system; keep runs apart yourself (e.g. the "
                    "scheduler's max_concurrent_runs: 1)", root)
        yield
        return
    if config.s3.lock_table:
        store = _DynamoItem(dynamodb(config.s3), config.s3.lock_table, f"{root}#pipeline")
    else:
        store = _S3Object(_s3_client(config.s3, spark), f"{root}/_locks/pipeline.json")
    lock = _Lock(store, root, run_id, "pipeline")
    if holder := lock.take(wait_minutes * 60):
        raise _busy(root, holder, wait_minutes)
    try:
        yield
    finally:
        lock.give_back()


def local_folder(root: str) -> str | None:
    """The local folder of a root on this machine's file system (a path or ``file:`` URI), else None."""
    if "://" in root and not root.startswith("file:"):
        return None
    return root.removeprefix("file://").removeprefix("file:")


@contextmanager
def file_turn(lock_file: str, holder: dict, wait_seconds: float, busy, waiting):
    """Hold an exclusive ``flock`` on ``lock_file`` for the body, its holder (``holder`` with this host, process
    and time) written in it. A holder is waited for up to ``wait_seconds``, ``waiting(other)`` called whenever
    another holder is seen, then ``busy(other)`` is raised. The system lets go of the lock when its process
    ends, however it ends, so a killed holder never leaves a stale lock; two opens in one process (two
    threads) exclude each other too (a flock belongs to an open file, not to a process)."""
    import fcntl

    os.makedirs(os.path.dirname(lock_file), exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, told = time.monotonic() + wait_seconds, None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if not isinstance(e, BlockingIOError):
                    raise UserError(f"cannot lock {lock_file} ({e}); this file system does not support locks: put "
                                    "the root on one that does, or on S3") from e
                try:
                    other = json.loads(os.pread(fd, 4096, 0) or b"{}")
                except ValueError:  # being written by its holder
                    other = {}
                if other.get("job_id") != told:
                    told = other.get("job_id")
                    waiting(other)
                if time.monotonic() >= deadline:
                    raise busy(other) from None
                time.sleep(min(POLL_SECONDS, max(wait_seconds / 5, 0.05)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({**holder, "host": socket.gethostname(), "pid": os.getpid(),
                                  "taken_at": time.time()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _busy(root: str, holder: dict, wait_minutes: float) -> RootBusyError:
    return RootBusyError(
        f"{root}: pipeline run {holder.get('job_id', '?')} (host {holder.get('host', '?')}, process "
        f"{holder.get('pid', '?')}) is still running" + (f" after {wait_minutes:g} minutes of waiting" if wait_minutes
                                                         else "") + "; this run wrote nothing. It runs again at "
        "its next schedule (or pass --wait-minutes to wait for the other)")


def _s3_client(settings, spark=None):
    """A boto3 S3 client for the config's S3 (``s3`` settings, else the S3A settings of ``spark``'s Hadoop
    configuration, as a spark-submit ``--conf spark.hadoop.fs.s3a.endpoint=...`` gives them)."""
    import boto3
    from botocore.config import Config

    endpoint, region, path_style = settings.endpoint, settings.region, settings.path_style_access
    if spark is not None and not endpoint:
        hadoop = spark.sparkContext._jsc.hadoopConfiguration()
        endpoint = hadoop.get("fs.s3a.endpoint") or None
        region = region or hadoop.get("fs.s3a.endpoint.region") or None
        path_style = path_style or (hadoop.get("fs.s3a.path.style.access") or "").lower() == "true"
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"  # S3A takes a bare host name
    style = {"addressing_style": "path"} if path_style else {}
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=Config(s3=style))


class _Lock:
    """A turn on ``root`` held through a ``store`` (:class:`_DynamoItem`, :class:`_S3Object`): an item with
    the holder and an expiry, created only when absent, renewed and given back only by its holder."""

    def __init__(self, store, root: str, job_id: str, kind: str):
        self.store, self.root, self.job_id, self.kind = store, root, job_id, kind
        self.lost: str | None = None
        self.token = None  # what proves the item is still this holder's (its job id, its ETag)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def take(self, wait_seconds: float) -> dict | None:
        """Take the turn within ``wait_seconds``; None when taken, else the holder at the deadline."""
        deadline = time.monotonic() + wait_seconds
        told = None
        while (holder := self._try_take()) is not None:
            if holder.get("job_id") != told:
                told = holder.get("job_id")
                log.warning("%s is held by job %s (%s, host %s, process %s); waiting for it", self.root,
                            told, holder.get("kind"), holder.get("host"), holder.get("pid"))
            if time.monotonic() >= deadline:
                return holder
            time.sleep(POLL_SECONDS)
        self._renewer = threading.Thread(target=self._renew, name=f"lock {self.root}", daemon=True)
        self._renewer.start()
        return None

    def _item(self) -> dict:
        return {"job_id": self.job_id, "kind": self.kind, "host": socket.gethostname(), "pid": str(os.getpid()),
                "expires_at": f"{time.time() + TTL_SECONDS:.3f}"}

    def _try_take(self) -> dict | None:
        """Take the turn; None when taken, else the holder's item."""
        if (token := self.store.create(self._item())) is not None:
            self.token = token
            return None
        holder, theirs = self.store.read()
        if holder is None:
            return self._try_take()  # given back in between
        expired = float(holder["expires_at"]) < time.time()
        gone = holder["host"] == socket.gethostname() and not pid_alive(int(holder["pid"]))
        if expired or gone:  # a killed or frozen holder: take it over (gone: now rather than after the TTL)
            if (token := self.store.replace(self._item(), theirs)) is None:
                return self._try_take()
            self.token = token
            log.warning("%s: took over the turn of job %s, whose process %s %s", self.root, holder["job_id"],
                        holder["pid"], "is gone" if gone else f"stopped renewing it for {TTL_SECONDS:.0f} s")
            return None
        return holder

    def _renew(self) -> None:
        while not self._stop.wait(TTL_SECONDS / 3):
            try:
                token = self.store.replace(self._item(), self.token)
            except Exception as e:  # noqa: BLE001 - a failed renewal is retried; the TTL leaves room for two
                log.warning("%s: could not renew the lock of job %s: %s", self.root, self.job_id, e)
                continue
            if token is None:
                holder, _ = self.store.read()
                self.lost = holder["job_id"] if holder else "nobody (the lock was deleted)"
                log.error("%s: job %s lost its turn on the root to %s", self.root, self.job_id, self.lost)
                return
            self.token = token

    def give_back(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.token is not None and not self.lost:
            self.store.delete(self.token)


class _DynamoItem:
    """The turn as an item of a DynamoDB table (key ``root``); the token is the holder's job id."""

    def __init__(self, client, table: str, key: str):
        self.client, self.table, self.key = client, table, key
        _ensure_table(client, table)

    def _attributes(self, item: dict) -> dict:
        return {"root": {"S": self.key}, **{k: {"N" if k in ("pid", "expires_at") else "S": v}
                                           for k, v in item.items()}}

    def _put(self, item: dict, **condition) -> str | None:
        try:
            self.client.put_item(TableName=self.table, Item=self._attributes(item), **condition)
            return item["job_id"]
        except self.client.exceptions.ConditionalCheckFailedException:
            return None

    def create(self, item: dict) -> str | None:
        return self._put(item, ConditionExpression="attribute_not_exists(#r)", ExpressionAttributeNames={"#r": "root"})

    def replace(self, item: dict, token: str) -> str | None:
        return self._put(item, ConditionExpression="job_id = :theirs",
                         ExpressionAttributeValues={":theirs": {"S": token}})

    def read(self) -> tuple[dict | None, str | None]:
        found = self.client.get_item(TableName=self.table, Key={"root": {"S": self.key}},
                                     ConsistentRead=True).get("Item")
        holder = {k: next(iter(v.values())) for k, v in found.items()} if found else None
        return holder, holder and holder["job_id"]

    def delete(self, token: str) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key={"root": {"S": self.key}},
                                    ConditionExpression="job_id = :me", ExpressionAttributeValues={":me": {"S": token}})
        except self.client.exceptions.ConditionalCheckFailedException:
            pass  # taken over already


class _S3Object:
    """The turn as an S3 object written with S3's conditional writes (If-None-Match, If-Match); the token is
    its ETag."""

    def __init__(self, client, uri: str):
        bucket_key = uri.split("://", 1)[1]
        self.client, (self.bucket, self.key) = client, bucket_key.split("/", 1)

    def _put(self, item: dict, **condition) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(item).encode(),
                                          **condition)["ETag"]
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                return None
            if code == "NotImplemented":
                raise UserError(f"s3://{self.bucket}/{self.key}: this S3 server does not support conditional "
                                "writes (If-None-Match), which the pipeline run lock needs; set s3.lock_table "
                                "to take turns through DynamoDB instead") from e
            raise

    def create(self, item: dict) -> str | None:
        return self._put(item, IfNoneMatch="*")

    def replace(self, item: dict, token: str) -> str | None:
        return self._put(item, IfMatch=token)

    def read(self) -> tuple[dict | None, str | None]:
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None, None
        return json.loads(found["Body"].read()), found["ETag"]

    def delete(self, token: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=token)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("PreconditionFailed", "NoSuchKey"):
                raise


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_table(client, table: str) -> None:
    try:
        if client.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE":
            return
    except client.exceptions.ResourceNotFoundException:
        try:
            client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                AttributeDefinitions=[{"AttributeName": "root", "AttributeType": "S"}],
                                KeySchema=[{"AttributeName": "root", "KeyType": "HASH"}])
        except client.exceptions.ResourceInUseException:
            pass  # another job created it at the same moment
    except client.exceptions.ClientError as e:
        raise UserError(f"s3.lock_table {table}: DynamoDB refused to describe it: {e}") from e
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
