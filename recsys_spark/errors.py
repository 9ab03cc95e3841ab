"""Errors a user can fix (exit code 2) as opposed to failures of the program or platform (exit code 1); a
root busy with another pipeline run is exit code 75."""

import re


class UserError(Exception):
    """Bad input the user can fix: a config key, a path, an expression. The message says what and where."""


class ConfigError(UserError):
    """The YAML config (or a schema file it names) is invalid; the message lists every problem found."""


class ConcurrentJobError(Exception):
    """Another job kept changing what this job writes (or holds it) until this job gave up; the message names
    that job and what this one left (nothing half-done). Not the user's input: exit code 1, run it again."""


class RootBusyError(Exception):
    """Another pipeline run holds the root (an overlapping schedule): this one wrote nothing. Exit code 75
    (EX_TEMPFAIL: try again later), so a scheduler can tell it from a failure."""


BUSY_EXIT_CODE = 75

CONFLICT = re.compile(r"Concurrent(Append|DeleteRead|DeleteDelete|Transaction|Write|Modification)Exception|"
                      r"MetadataChangedException|ProtocolChangedException|DELTA_CONCURRENT_|"
                      r"DELTA_METADATA_CHANGED|DELTA_PROTOCOL_CHANGED")


def is_conflict(e: BaseException) -> bool:
    """True when ``e`` is Delta refusing a commit because another one came first."""
    return bool(CONFLICT.search(f"{type(e).__name__}: {e}"))


def storage_failure(text: str) -> str | None:
    """A one-line account of an S3 failure found in an error's text (Spark's errors carry the JVM's causes),
    or None: throttling past S3A's retries, or a server that could not be reached.

    >>> storage_failure("... s3a://b/wh/users ... AWSServiceThrottledException: ... Status Code: 503")[:44]
    's3a://b/wh/users: S3 kept answering 503 Slow'
    """
    import re

    path = re.search(r"s3a?://[^\s:;,\"'()\]]+", text)
    where = f"{path.group(0)}: " if path else ""
    if re.search(r"AWSServiceThrottledException|SlowDown|Status Code: 503|Please reduce your request rate", text):
        cause = ("S3 kept answering 503 SlowDown (throttling) past S3A's retries (fs.s3a.retry.throttle.limit, "
                 "fs.s3a.attempts.maximum)")
    elif re.search(r"Connection refused|ConnectException|Unable to execute HTTP request|AWSClientIOException|"
                   r"UnknownHostException|connect timed out", text):
        cause = "S3 could not be reached past S3A's retries (fs.s3a.retry.limit, fs.s3a.attempts.maximum)"
    else:
        return None
    return (f"{where}{cause}; the job stopped there, and what it had not committed is not visible (each table "
            f"stays at its last committed version). Run it again when S3 answers.")
