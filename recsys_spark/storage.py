"""File-system operations on any URI Spark can reach (local, ``s3://``, ``s3a://``, ``dbfs:``...), through
Hadoop's FileSystem API in the session's JVM, so they use exactly the settings and credentials Spark uses.

>>> delete_path(spark, "s3a://bucket/tmp/run-42")   # doctest: +SKIP
True
"""

from __future__ import annotations


def _hadoop_path(spark, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def path_exists(spark, uri: str) -> bool:
    path, fs = _hadoop_path(spark, uri)
    return bool(fs.exists(path))


def is_file(spark, uri: str) -> bool:
    path, fs = _hadoop_path(spark, uri)
    return bool(fs.exists(path) and fs.getFileStatus(path).isFile())


def delete_path(spark, uri: str) -> bool:
    """Delete a file or a folder with everything in it; False when there was nothing to delete."""
    path, fs = _hadoop_path(spark, uri)
    return bool(fs.delete(path, True))


def list_files(spark, uri: str, suffixes: tuple[str, ...], allow_empty: bool = False) -> list[str]:
    """``uri`` itself when it is a file, else the files directly in that folder whose names end with one of
    ``suffixes`` (case-insensitive; names starting with ``_`` or ``.`` skipped), sorted by name. A clear
    error when the path does not exist or (unless ``allow_empty``) the folder holds no such file."""
    from recsys_spark.errors import UserError

    path, fs = _hadoop_path(spark, uri)
    if not fs.exists(path):
        raise UserError(f"source {uri} does not exist")
    if fs.getFileStatus(path).isFile():
        return [uri]
    names = sorted(s.getPath().getName() for s in fs.listStatus(path) if s.isFile())
    files = [f"{uri.rstrip('/')}/{n}" for n in names
             if n.lower().endswith(suffixes) and not n.startswith(("_", "."))]
    if not files and not allow_empty:
        raise UserError(f"source folder {uri} holds no {' or '.join(suffixes)} file")
    return files


def stamp(spark, uri: str) -> tuple[int, int]:
    """A file's size and modification time: what changes when it is rewritten."""
    path, fs = _hadoop_path(spark, uri)
    status = fs.getFileStatus(path)
    return status.getLen(), status.getModificationTime()


def read_first_line(spark, uri: str) -> str:
    """The first line of a text file (decompressed when its name says gzip, bzip2...), without its newline."""
    jvm = spark.sparkContext._jvm
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(_open(spark, uri), "UTF-8"))
    try:
        return reader.readLine() or ""
    finally:
        reader.close()


def read_head(spark, uri: str, size: int = 1 << 16) -> bytes:
    """Up to ``size`` first bytes of a file, decompressed when its name says gzip, bzip2..."""
    jvm = spark.sparkContext._jvm
    stream = jvm.org.apache.commons.io.input.BoundedInputStream(_open(spark, uri), size)
    try:
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def _open(spark, uri: str):
    jvm = spark.sparkContext._jvm
    path, fs = _hadoop_path(spark, uri)
    stream = fs.open(path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark.sparkContext._jsc.hadoopConfiguration()).getCodec(path)
    return stream if codec is None else codec.createInputStream(stream)


def write_text(spark, uri: str, text: str) -> None:
    """Create a small file holding ``text`` (fails if it exists)."""
    path, fs = _hadoop_path(spark, uri)
    out = fs.create(path, False)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def read_text(spark, uri: str) -> str:
    """The whole content of a small text file."""
    jvm = spark.sparkContext._jvm
    path, fs = _hadoop_path(spark, uri)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(fs.open(path), "UTF-8"))
    try:
        lines = []
        while (line := reader.readLine()) is not None:
            lines.append(line)
        return "\n".join(lines)
    finally:
        reader.close()


def list_folders(spark, uri: str) -> list[str]:
    """Names of the folders directly under ``uri``, sorted ([] when ``uri`` does not exist)."""
    path, fs = _hadoop_path(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(s.getPath().getName() for s in fs.listStatus(path) if s.isDirectory())


def rename(spark, source: str, target: str) -> None:
    """Move a file or folder (atomic on HDFS and local disks; a copy then delete on object stores)."""
    src, fs = _hadoop_path(spark, source)
    dst, _ = _hadoop_path(spark, target)
    if not fs.rename(src, dst):
        raise OSError(f"could not move {source} to {target}")


def siblings(spark, uri: str, prefix: str) -> list[str]:
    """Paths next to ``uri`` whose names start with ``prefix`` (e.g. leftovers of interrupted runs)."""
    path, fs = _hadoop_path(spark, uri.rstrip("/"))
    parent = path.getParent()
    if parent is None or not fs.exists(parent):
        return []
    return sorted(str(s.getPath()) for s in fs.listStatus(parent) if s.getPath().getName().startswith(prefix))


def footprint(spark, uri: str) -> tuple[int, int]:
    """(files, bytes) under ``uri``, recursively; (0, 0) when it does not exist. Hadoop's content summary,
    in one call to the JVM (walking the listing from Python cost a round trip per file: 0.15 s a table, a
    fifth of `maintain`); the local file system's checksum sidecars are not in it."""
    path, fs = _hadoop_path(spark, uri)
    if not fs.exists(path):
        return 0, 0
    summary = fs.getContentSummary(path)
    return summary.getFileCount(), summary.getLength()


# Object stores where a new object becomes visible whole when its upload ends (a PUT): writing the file in
# place already replaces it in one step.
WHOLE_OBJECT_PUT = {"s3", "s3a", "s3n", "gs"}


def replace_text(spark, uri: str, text: str) -> None:
    """Create or replace a small file so that a reader sees the old content or the new, never a part.

    On object stores a PUT does that. On file systems the text goes to a hidden temporary file beside it,
    renamed over the target (rename(2) replaces atomically on local disks; HDFS does not replace on
    rename, so there the old file is deleted first: a reader can find it missing for that instant, never
    half-written). Local files are written without Hadoop's ``.crc`` side file, whose separate rename
    would otherwise leave a moment where content and checksum disagree.
    """
    import uuid

    path, fs = _hadoop_path(spark, uri)
    if fs.getScheme() in WHOLE_OBJECT_PUT:
        _write(fs, path, text, overwrite=True)
        return
    raw = fs.getRawFileSystem() if fs.getClass().getName() == "org.apache.hadoop.fs.LocalFileSystem" else fs
    jvm = spark.sparkContext._jvm
    temp = jvm.org.apache.hadoop.fs.Path(path.getParent(), f".{path.getName()}.{uuid.uuid4().hex}.tmp")
    _write(raw, temp, text, overwrite=False)
    if not raw.rename(temp, path):
        raw.delete(path, False)
        if not raw.rename(temp, path):
            raw.delete(temp, False)
            raise OSError(f"could not replace {uri}")
    raw.delete(jvm.org.apache.hadoop.fs.Path(path.getParent(), f".{path.getName()}.crc"), False)


def _write(fs, path, text: str, overwrite: bool) -> None:
    out = fs.create(path, overwrite)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def list_names(spark, uri: str) -> list[str]:
    """Names of the files directly in the folder ``uri`` (hidden ones included), sorted ([] when it does not
    exist)."""
    path, fs = _hadoop_path(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(s.getPath().getName() for s in fs.listStatus(path) if s.isFile())


def newest_ms(spark, uri: str) -> int:
    """The newest modification time (epoch milliseconds) of the files under ``uri`` (a folder's own time is
    not used: object stores have none); 0 when it holds none."""
    return time_span(spark, uri)[1]


def time_span(spark, uri: str) -> tuple[int, int]:
    """(oldest, newest) modification times (epoch milliseconds) of the files under ``uri``; (0, 0) when it
    holds none."""
    path, fs = _hadoop_path(spark, uri)
    times = []
    if fs.exists(path):
        listing = fs.listFiles(path, True)
        while listing.hasNext():
            times.append(int(listing.next().getModificationTime()))
    return (min(times), max(times)) if times else (0, 0)


def read_bytes(spark, uri: str) -> bytes:
    """A whole file, decompressed when its name says gzip, bzip2..."""
    jvm = spark.sparkContext._jvm
    stream = _open(spark, uri)
    try:
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def write_bytes(spark, uri: str, data: bytes) -> None:
    """Create ``uri`` holding ``data``, compressed when its name says gzip, bzip2... (fails if it exists)."""
    jvm = spark.sparkContext._jvm
    path, fs = _hadoop_path(spark, uri)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark.sparkContext._jsc.hadoopConfiguration()).getCodec(path)
    raw = fs.create(path, False)
    out = raw if codec is None else codec.createOutputStream(raw)
    try:
        out.write(bytearray(data))
    finally:
        out.close()
