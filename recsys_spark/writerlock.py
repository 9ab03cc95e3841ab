"""Writers on an S3 root take turns through one DynamoDB item: a job holds the root while it writes.

Delta's default log store on S3 cannot make a commit atomic across processes, so two jobs writing one table
at once from two Spark applications can lose a commit (Delta's DynamoDB log store fixes that inside Delta,
but its jar is not published where the install step can fetch it). With ``s3.lock_table`` set, every job
on an S3 root (import, ingest, train, batch, delete-users, maintain, export, evaluate) first takes that
root's item in the DynamoDB table, with a conditional write, and gives it back after its job record is
written; a second job waits for it (logging who holds it), then fails naming the holder after
``s3.lock_wait_minutes``. The holder renews its item every ``TTL_SECONDS / 3``; an item not renewed for
``TTL_SECONDS`` (a killed or frozen job elsewhere), or held by a process of this host that is gone, is
taken over. The table is created on first use (on-demand capacity, key ``root``).

>>> with root_lock(config, "import-20261130T2301-ab12cd", "import"):   # doctest: +SKIP
...     import_the_file()
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager

from recsys_spark.errors import ConcurrentJobError, UserError

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
    lock = _Lock(dynamodb(config.s3), config.s3.lock_table, root, job_id, kind)
    lock.take(config.s3.lock_wait_minutes * 60)
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


class _Lock:
    def __init__(self, client, table: str, root: str, job_id: str, kind: str):
        self.client, self.table, self.root, self.job_id, self.kind = client, table, root, job_id, kind
        self.lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def take(self, wait_seconds: float) -> None:
        _ensure_table(self.client, self.table)
        deadline = time.monotonic() + wait_seconds
        told = None
        while True:
            holder = self._try_take()
            if holder is None:
                break
            if holder.get("job_id") != told:
                told = holder.get("job_id")
                log.warning("%s is held by job %s (%s, host %s, process %s); waiting for it", self.root,
                            told, holder.get("kind"), holder.get("host"), holder.get("pid"))
            if time.monotonic() >= deadline:
                raise ConcurrentJobError(
                    f"{self.root}: job {told} ({holder.get('kind')}, host {holder.get('host')}, process "
                    f"{holder.get('pid')}) held the root for all of s3.lock_wait_minutes; nothing was written "
                    f"by this job: run it again when that one is done")
            time.sleep(POLL_SECONDS)
        self._renewer = threading.Thread(target=self._renew, name=f"lock {self.root}", daemon=True)
        self._renewer.start()

    def _try_take(self) -> dict | None:
        """Take the root; None when taken, else the holder's item (as plain strings)."""
        now = time.time()
        item = {"root": {"S": self.root}, "job_id": {"S": self.job_id}, "kind": {"S": self.kind},
                "host": {"S": socket.gethostname()}, "pid": {"N": str(os.getpid())},
                "expires_at": {"N": f"{now + TTL_SECONDS:.3f}"}}
        error = self.client.exceptions.ConditionalCheckFailedException
        try:
            self.client.put_item(TableName=self.table, Item=item,
                                 ConditionExpression="attribute_not_exists(#r) OR expires_at < :now",
                                 ExpressionAttributeNames={"#r": "root"},
                                 ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}})
            return None
        except error:
            pass
        found = self.client.get_item(TableName=self.table, Key={"root": {"S": self.root}},
                                     ConsistentRead=True).get("Item")
        if found is None:
            return self._try_take()  # given back in between
        holder = {k: next(iter(v.values())) for k, v in found.items()}
        if holder["host"] == socket.gethostname() and not pid_alive(int(holder["pid"])):
            try:  # its process is gone (killed): take it over now rather than after the TTL
                self.client.put_item(TableName=self.table, Item=item, ConditionExpression="job_id = :theirs",
                                     ExpressionAttributeValues={":theirs": {"S": holder["job_id"]}})
                log.warning("%s: took over the turn of job %s, whose process %s is gone", self.root,
                            holder["job_id"], holder["pid"])
                return None
            except error:
                return self._try_take()
        return holder

    def _renew(self) -> None:
        while not self._stop.wait(TTL_SECONDS / 3):
            try:
                self.client.update_item(
                    TableName=self.table, Key={"root": {"S": self.root}}, UpdateExpression="SET expires_at = :e",
                    ConditionExpression="job_id = :me",
                    ExpressionAttributeValues={":e": {"N": f"{time.time() + TTL_SECONDS:.3f}"},
                                               ":me": {"S": self.job_id}})
            except self.client.exceptions.ConditionalCheckFailedException:
                found = self.client.get_item(TableName=self.table, Key={"root": {"S": self.root}}).get("Item")
                self.lost = found["job_id"]["S"] if found else "nobody (the lock was deleted)"
                log.error("%s: job %s lost its turn on the root to %s", self.root, self.job_id, self.lost)
                return
            except Exception as e:  # noqa: BLE001 - a failed renewal is retried; the TTL leaves room for two
                log.warning("%s: could not renew the lock of job %s: %s", self.root, self.job_id, e)

    def give_back(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            self.client.delete_item(TableName=self.table, Key={"root": {"S": self.root}},
                                    ConditionExpression="job_id = :me",
                                    ExpressionAttributeValues={":me": {"S": self.job_id}})
        except self.client.exceptions.ConditionalCheckFailedException:
            pass  # taken over already


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
