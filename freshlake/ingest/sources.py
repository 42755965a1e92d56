"""Input files for ingest: discovery, identity (for idempotence) and reading as raw records.

Paths are listed by Spark itself (the `binaryFile` source), so every URL Spark can read (local
paths, `file:`, `hdfs://`, `s3a://`, `abfss://`, `gs://`, ...) works the same way, on a classic
session and through Spark Connect.
Every format becomes the same raw-record form, one JSON object per row in `value`, so a single
validation path (features.validation) serves JSONL, CSV and Parquet alike.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

Format = Literal["jsonl", "csv", "parquet"]
FORMAT_CHOICES = ("auto", "jsonl", "csv", "parquet")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4", ".snappy", ".deflate")
EXTENSIONS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
CORRUPT_COLUMN = "_corrupt_record"
# How far into a local file `first_lines` looks for the end of its first line before it leaves
# the file to the Spark job.
FIRST_LINE_LIMIT = 1 << 20
_LINE_END = re.compile(rb"\r\n|\r|\n")
# Spark cannot read INT64 TIMESTAMP(NANOS) columns (pandas writes them by default) unless this
# is set, and then reads them as numbers of nanoseconds: ingest turns them into timestamps.
NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"
# Parquet/CSV timestamps keep microseconds when turned into JSON text.
JSON_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", "ignoreNullFields": "true"}


@dataclass(frozen=True)
class InputFile:
    """One file to ingest, with what identifies this exact content for idempotent re-runs."""

    path: str  # fully qualified, e.g. file:/data/logs/impressions/part-00000.jsonl
    size: int
    modified_ms: int
    format: Format
    # The path as Spark's file scans report it in `_metadata.file_path` (URL-encoded).
    scanned_as: str | None = None

    @property
    def modified_at(self) -> datetime:
        """The file's modification time: the ingest clock its event times are judged against."""
        return datetime.fromtimestamp(self.modified_ms / 1000, UTC)

    @property
    def scan_key(self) -> str | None:
        """What `read_json_lines` tags this file's records with while its path, size and
        modification time are still those listed (None when the listing had no scan path)."""
        if self.scanned_as is None:
            return None
        return f"{self.scanned_as}\n{self.size}\n{self.modified_ms}"

    @property
    def fingerprint(self) -> str:
        """Stable id of (path, size, modification time): a changed file is a new input."""
        key = f"{self.path}\n{self.size}\n{self.modified_ms}"
        return hashlib.sha256(key.encode()).hexdigest()[:24]


def format_of(path: str) -> Format | None:
    """The format a file name implies (`.jsonl.gz` is jsonl), or None."""
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    for extension, fmt in EXTENSIONS.items():
        if name.endswith(extension):
            return fmt
    return None


def literal_path(path: str) -> str:
    """A listed file's path as Spark's readers take it literally: they expand glob characters
    (`*?[]{}` and the escaping backslash), which a file's own name may hold."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", path)


def _qualified(pattern: str) -> str:
    """An absolute path for a local one: a Spark Connect server may run in another directory."""
    return pattern if "://" in pattern or ":/" in pattern else os.path.abspath(pattern)


def _depth(path: str) -> int:
    """Folders and name of a path or URL below its root (`file:/a/b` and `/a/b` are both 2)."""
    return len([part for part in urlparse(path).path.split("/") if part])


def _listed_files(spark: SparkSession, pattern: str) -> list[tuple[str, int, int, str, bool]]:
    """(path, size, modification ms, path as scans report it, found in a directory) of every
    file a path or glob names.

    Spark's own file listing (the `binaryFile` source without its content column, so no file is
    read) works the same on a classic session and through Spark Connect, for every URL Spark
    reads. Directories are listed recursively, leaving out hidden files and folders (`_SUCCESS`,
    `.crc`, ...); a file deeper than the pattern was found in a directory it names.
    """
    qualified = _qualified(pattern)
    # Spark looks for a streaming sink's metadata under a single path and logs a stack trace
    # when that path is a glob; named twice (the listing keeps each file once) it does not.
    paths = [qualified, qualified] if any(c in qualified for c in "*?[{") else [qualified]
    try:
        rows = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .load(paths)
            .select(
                "path",
                "length",
                F.unix_millis("modificationTime").alias("modified_ms"),
                F.col("_metadata.file_path").alias("scanned_as"),
            )
            .collect()
        )
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc):
            return []
        raise
    depth = _depth(qualified)
    return [(r.path, r.length, r.modified_ms, r.scanned_as, _depth(r.path) > depth) for r in rows]


def list_input_files(
    spark: SparkSession, paths: Iterable[str], fmt: str = "auto"
) -> list[InputFile]:
    """Expand paths, globs and directories into files, sorted; raise when something is wrong.

    A file named by a path or glob is read in `fmt`, or, with `fmt="auto"`, in the format its
    extension implies. Inside a directory only files whose extension matches are read (not a
    README, nor the Parquet copy of JSONL logs), and with `fmt="auto"` a directory mixing
    formats is refused: a generated-logs folder may hold the same records in both.
    """
    files: dict[str, InputFile] = {}
    for pattern in paths:
        listed = _listed_files(spark, pattern)
        if not listed:
            raise FileNotFoundError(f"no input files at {pattern}")
        found = []
        for path, size, modified_ms, scanned_as, in_directory in listed:
            implied = format_of(path)
            chosen = implied if fmt == "auto" else fmt
            if in_directory and (implied is None or implied != chosen):
                continue
            if chosen is None:
                raise ValueError(f"cannot tell the format of {path}; pass --format")
            found.append(InputFile(path, size, modified_ms, chosen, scanned_as))
        if not found:
            raise FileNotFoundError(f"no {fmt} input files at {pattern}")
        kinds = {f.format for f in found}
        if len(kinds) > 1:
            raise ValueError(f"{pattern} holds {sorted(kinds)} files; pass --format to choose one")
        files.update((f.path, f) for f in found)
    return [files[p] for p in sorted(files)]


def read_raw_records(spark: SparkSession, file: InputFile) -> DataFrame:
    """The file as raw records: `value` (JSON text), `source_file`, `parse_error`."""
    if file.format == "jsonl":
        # Read as text so that a malformed line survives as a raw string for the quarantine.
        lines = spark.read.text(literal_path(file.path))
        frame = lines.select(
            _as_listed(lines, file, F.col("value")).alias("value"),
            F.lit(None).cast("string").alias("parse_error"),
        )
    elif file.format == "csv":
        frame = _csv_records(spark, file)
    else:
        rows = spark.read.parquet(literal_path(file.path))
        frame = rows.select(
            _as_listed(rows, file, _parquet_json(rows, file.path)).alias("value"),
            F.lit(None).cast("string").alias("parse_error"),
        )
    return frame.select("value", F.lit(file.path).alias("source_file"), "parse_error")


def read_json_lines(spark: SparkSession, paths: Sequence[str], file_column: str) -> DataFrame:
    """JSON Lines files in one scan, as raw records (`value`, `parse_error`) with each record's
    file in `file_column`: its `InputFile.scan_key` while the file is as it was listed, another
    key once it has changed (its size or modification time as read differ).

    One scan whatever the number of files: Spark packs small files into its tasks, and the
    plan, its generated code and its compilation do not grow with the files.
    """
    lines = spark.read.text([literal_path(p) for p in paths])
    return lines.select(
        "value",
        F.lit(None).cast("string").alias("parse_error"),
        _scan_key(lines).alias(file_column),
    )


def read_parquet_records(spark: SparkSession, paths: Sequence[str], file_column: str) -> DataFrame:
    """Parquet files of one `parquet_layout` in one scan, as raw records (`value`: each row as
    JSON text, `parse_error`) with each record's file in `file_column`, as `read_json_lines`."""
    rows = spark.read.parquet(*[literal_path(p) for p in paths])
    return rows.select(
        _parquet_json(rows, paths[0]).alias("value"),
        F.lit(None).cast("string").alias("parse_error"),
        _scan_key(rows).alias(file_column),
    )


def _scan_key(frame: DataFrame) -> Column:
    """Each record's file as `InputFile.scan_key` spells it, from what its scan read: the file's
    path, size and modification time (`_metadata`, which a data column of that name cannot
    hide)."""
    read = frame.metadataColumn("_metadata")
    return F.concat_ws(
        "\n",
        read.getField("file_path"),
        read.getField("file_size").cast("string"),
        F.unix_millis(read.getField("file_modification_time")).cast("string"),
    )


def _parquet_json(rows: DataFrame, path: str) -> Column:
    """A Parquet scan's rows as JSON text, nanosecond timestamps (per `path`'s footer) as
    microsecond ones."""
    nanos = set(nanosecond_timestamp_columns(path))
    fields = [_nanos_as_timestamp(c) if c in nanos else _column(c) for c in rows.columns]
    return F.to_json(F.struct(*fields), JSON_OPTIONS)


def _as_listed(frame: DataFrame, file: InputFile, column: Column) -> Column:
    """`column` of `frame`, a scan of `file` alone; an error failing the job for a record read
    while the file's size or modification time differ from its listing (it changed since)."""
    read = frame.metadataColumn("_metadata")
    changed = (read.getField("file_size") != F.lit(file.size)) | (
        F.unix_millis(read.getField("file_modification_time")) != F.lit(file.modified_ms)
    )
    error = F.raise_error(F.lit(f"{file.path} changed since it was listed"))
    return F.when(changed, error).otherwise(column)


def nanosecond_timestamp_columns(path: str) -> list[str]:
    """Top-level columns a Parquet file stores as nanosecond timestamps, from its footer.

    Empty when the footer cannot be read from this process (a file system pyarrow does not
    know): such columns then reach validation as numbers, which it quarantines with the value.
    """
    schema = _parquet_schema(path)
    if schema is None:
        return []
    return [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]


def parquet_layout(path: str) -> str | None:
    """What decides how Spark reads a Parquet file's rows: its columns' names and types, from
    its footer (without the key-value metadata, such as pandas' per-file index). Files of one
    layout can be read in one scan; None when the footer cannot be read from this process."""
    schema = _parquet_schema(path)
    if schema is None:
        return None
    return schema.remove_metadata().to_string(show_field_metadata=False)


def _parquet_schema(path: str) -> pa.Schema | None:
    """A Parquet file's schema from its footer; None when this process cannot read it."""
    local = _local_path(path)
    try:
        if local is not None:
            return pq.read_schema(local)
        filesystem, inner = pafs.FileSystem.from_uri(path)
        return pq.read_schema(inner, filesystem=filesystem)
    except (pa.ArrowException, OSError, ValueError):
        return None


def _nanos_as_timestamp(name: str) -> Column:
    """A nanosecond column read as a number (`NANOS_AS_LONG`) as a microsecond timestamp;
    the digits below a microsecond are dropped, as the contract keeps microseconds."""
    return F.expr(f"timestamp_micros({_quoted(name)} div 1000)").alias(name)


def _column(name: str) -> Column:
    """A column by its exact name, whatever characters it holds (dots, backticks)."""
    return F.col(_quoted(name))


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _first_line(spark: SparkSession, path: str) -> str:
    first = spark.read.text(literal_path(path)).limit(1).collect()
    if not first:
        raise ValueError(f"{path}: empty CSV file, no header line")
    return first[0].value


def csv_columns(header_line: str) -> list[str]:
    """Column names of a CSV header line; unnamed columns become `_c<i>` as in Spark.

    A leading byte order mark (spreadsheets write one) is not part of the first name.
    """
    names = next(csv.reader([header_line.removeprefix("\ufeff")]))
    return [name.strip() or f"_c{i}" for i, name in enumerate(names)]


def _data_lines(
    spark: SparkSession, path: str, header_line: str, listed: InputFile | None
) -> DataFrame:
    """The lines of a CSV file other than its header, as `value`; with `listed`, as listed."""
    lines = spark.read.text(literal_path(path))
    if listed is not None:
        lines = lines.select(_as_listed(lines, listed, F.col("value")).alias("value"))
    return lines.where(F.col("value") != F.lit(header_line))


def read_csv_strings(spark: SparkSession, path: str, listed: InputFile | None = None) -> DataFrame:
    """A CSV file with a header as all-string columns, plus `_corrupt_record` for broken lines.

    Each line is one record (quoted fields may not span lines); quotes inside quoted fields
    are doubled (RFC 4180, as Python's csv and pandas write them). A line with a different
    number of fields than the header, or an unclosed quote, is broken: its columns are NULL
    and `_corrupt_record` holds the line. (Spark's CSV reader silently pads short lines.)
    With `listed` (the file's listing), a line read from the file once changed fails the job.
    """
    header_line = _first_line(spark, path)
    return _csv_fields(_data_lines(spark, path, header_line, listed), csv_columns(header_line))


def _csv_fields(lines: DataFrame, names: Sequence[str], keep: Sequence[str] = ()) -> DataFrame:
    """CSV data lines (`value`) as the columns `names`, all strings, plus `_corrupt_record`
    for a broken line (see `read_csv_strings`), and the columns `keep` as they are."""
    ddl = ", ".join(f"{_quoted(name)} STRING" for name in names)
    parsed = F.from_csv(F.col("value"), ddl, {"escape": '"', "mode": "PERMISSIVE"})
    unquoted = F.regexp_replace(F.col("value"), r'"[^"]*"', "")
    fields = F.size(F.split(unquoted, ",", -1))
    unclosed = F.length(F.regexp_replace(F.col("value"), '[^"]', "")) % 2 == 1
    broken = (fields != len(names)) | unclosed
    return lines.select(
        *[F.when(~broken, parsed.getField(name)).alias(name) for name in names],
        F.when(broken, F.col("value")).alias(CORRUPT_COLUMN),
        *keep,
    )


def repeated_csv_columns(names: list[str]) -> list[str]:
    """Header names that occur more than once, compared as Spark resolves columns (ignoring
    case): such a header is ambiguous, as a JSON object with a repeated key is."""
    seen: dict[str, int] = {}
    for name in names:
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
    return sorted({name for name in names if seen[name.lower()] > 1})


def _csv_records(spark: SparkSession, file: InputFile) -> DataFrame:
    header_line = _first_line(spark, file.path)
    return _csv_as_records(_data_lines(spark, file.path, header_line, file), header_line)


def read_csv_records(
    spark: SparkSession, paths: Sequence[str], file_column: str, header_line: str
) -> DataFrame:
    """CSV files whose first line is `header_line` in one scan, as raw records (`value`: each
    line's fields as JSON text, `parse_error`) with each record's file in `file_column`, as
    `read_json_lines`."""
    lines = spark.read.text([literal_path(p) for p in paths])
    keyed = lines.select("value", _scan_key(lines).alias(file_column))
    data = keyed.where(F.col("value") != F.lit(header_line))
    return _csv_as_records(data, header_line, keep=[file_column])


def _csv_as_records(lines: DataFrame, header_line: str, keep: Sequence[str] = ()) -> DataFrame:
    """CSV data lines (`value`) under `header_line` as raw records (`value`, `parse_error`), and
    the columns `keep` as they are."""
    names = csv_columns(header_line)
    repeated = repeated_csv_columns(names)
    if repeated:
        # Which of the repeated columns a field is cannot be told: every line is quarantined
        # (malformed_row) with the reason, instead of the file failing the run.
        return lines.select(
            F.col("value"),
            F.lit(f"CSV header repeats column names: {', '.join(repeated)}").alias("parse_error"),
            *keep,
        )
    rows = _csv_fields(lines, names, keep)
    broken = F.col(CORRUPT_COLUMN).isNotNull()
    return rows.select(
        F.when(broken, F.col(CORRUPT_COLUMN))
        .otherwise(F.to_json(F.struct(*[_column(c) for c in names]), JSON_OPTIONS))
        .alias("value"),
        F.when(broken, F.lit(f"CSV line does not match the header ({len(names)} fields)")).alias(
            "parse_error"
        ),
        *keep,
    )


def first_lines(spark: SparkSession, files: Sequence[InputFile]) -> dict[str, str]:
    """The first line of each file (by path); a file without one, or changed since it was
    listed, is left out.

    Files this process can open (local, uncompressed or gzip/bzip2) are read up to their first
    line end; the others in one Spark job, which reads the whole split that starts at byte 0
    of each: the first line is the one with the smallest `monotonically_increasing_id` of that
    split, as a task reads its rows in file order.
    """
    found = {f.path: line for f in files if (line := _local_first_line(f)) is not None}
    remote = [f for f in files if f.path not in found and f.scan_key is not None]
    if not remote:
        return found
    lines = spark.read.text([literal_path(f.path) for f in remote])
    metadata = lines.metadataColumn("_metadata")
    first = (
        lines.where(metadata.getField("file_block_start") == 0)
        .select("value", _scan_key(lines).alias("key"), F.monotonically_increasing_id().alias("n"))
        .groupBy("key")
        .agg(F.min_by("value", "n").alias("value"))
        .collect()
    )
    paths = {f.scan_key: f.path for f in remote}
    return found | {paths[row.key]: row.value for row in first if row.key in paths}


def _local_path(path: str) -> str | None:
    """The file system path of a local file's path or `file:` URL; None for any other URL."""
    parsed = urlparse(path)
    return parsed.path if parsed.scheme in ("", "file") else None


def _local_first_line(file: InputFile) -> str | None:
    """The file's first line as Spark's text source reads it (ended by LF, CRLF or CR, without
    a leading UTF-8 byte order mark), read from a local file that is as it was listed.

    None when the file is not local, not as listed, compressed otherwise than gzip or bzip2,
    empty, unreadable, or has no line end within its first `FIRST_LINE_LIMIT` bytes.
    """
    local = _local_path(file.path)
    if local is None:
        return None
    suffix = os.path.splitext(local)[1].lower()
    codec = {".gz": "gzip", ".bz2": "bz2"}.get(suffix)
    if codec is None and suffix in COMPRESSION_SUFFIXES:
        return None
    filesystem = pafs.LocalFileSystem()
    head = b""
    try:
        info = filesystem.get_file_info(local)
        if (info.size, info.mtime_ns // 1_000_000) != (file.size, file.modified_ms):
            return None
        with filesystem.open_input_stream(local, compression=codec) as stream:
            while len(head) < FIRST_LINE_LIMIT and not _LINE_END.search(head):
                chunk = stream.read(64 * 1024)
                if not chunk:
                    break
                head += chunk
    except (pa.ArrowException, OSError, ValueError):
        return None
    if not head:
        return None
    line, *rest = _LINE_END.split(head, maxsplit=1)
    if not rest and len(head) >= FIRST_LINE_LIMIT:
        return None
    # Hadoop's line reader, under Spark's text source, drops a leading UTF-8 byte order mark.
    return line.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="replace")
