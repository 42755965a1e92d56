"""A Kafka source for Structured Streaming on Spark's Python Data Source API (format `fl-kafka`).

It gives the columns of Spark's built-in `kafka` source (key, value, topic, partition, offset,
timestamp, timestampType) and takes the same options: `kafka.bootstrap.servers`, `subscribe`
(comma-separated topics), `startingOffsets` (earliest | latest | JSON), `maxOffsetsPerTrigger`,
and any other `kafka.<key>` passed to the client unchanged (SASL/SSL). It supports
`trigger(availableNow=True)`. Offsets are per partition; each micro-batch reads
`[start, end)` of every partition in its own Spark task with a confluent-kafka consumer
assigned to that partition (no consumer group, no broker-side commits: the checkpoint owns the
offsets). Partition ends come from fetching to EOF (`streaming.offsets`), never from the
broker's high watermark.

Spark passes option keys lower-cased and the read limit as `ReadMaxRows.max_rows`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from freshlake.streaming.offsets import (
    EARLIEST,
    LATEST,
    Offsets,
    consumer_config,
    earliest_offsets,
    end_offsets,
    parse_starting_offsets,
    topic_partitions,
)

log = logging.getLogger(__name__)

FORMAT_NAME = "fl-kafka"

# The built-in `kafka` source's columns (without the optional headers).
KAFKA_SCHEMA = StructType(
    [
        StructField("key", BinaryType(), True),
        StructField("value", BinaryType(), True),
        StructField("topic", StringType(), True),
        StructField("partition", IntegerType(), True),
        StructField("offset", LongType(), True),
        StructField("timestamp", TimestampType(), True),
        StructField("timestampType", IntegerType(), True),
    ]
)

_ARROW_SCHEMA = pa.schema(
    [
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("timestampType", pa.int32()),
    ]
)
_ROWS_PER_ARROW_BATCH = 10_000
_RESEEK_AFTER_S = 5.0  # seconds without progress before a read or lookup gets a new client
_MIN_LOOKUP_S = 1.0  # the shortest wait given to one step of an offset lookup


@dataclass(frozen=True)
class KafkaSourceOptions:
    """The source's options, from Spark's lower-cased option map."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    starting_offsets: Offsets | str
    max_offsets_per_trigger: int | None
    client: dict[str, str]
    poll_timeout_s: float

    @classmethod
    def parse(cls, options: dict[str, str]) -> KafkaSourceOptions:
        opts = {k.lower(): v for k, v in options.items()}
        servers = opts.get("kafka.bootstrap.servers")
        topics = tuple(t.strip() for t in opts.get("subscribe", "").split(",") if t.strip())
        if not servers or not topics:
            raise ValueError("options kafka.bootstrap.servers and subscribe are required")
        limit = opts.get("maxoffsetspertrigger")
        client = {
            k[len("kafka.") :]: v
            for k, v in opts.items()
            if k.startswith("kafka.") and k != "kafka.bootstrap.servers"
        }
        return cls(
            bootstrap_servers=servers,
            topics=topics,
            starting_offsets=parse_starting_offsets(opts.get("startingoffsets", "latest")),
            max_offsets_per_trigger=int(limit) if limit else None,
            client=client,
            # Spark's Kafka source waits `spark.network.timeout` (120 s) by default.
            poll_timeout_s=float(opts.get("polltimeoutms", "120000")) / 1000,
        )


class KafkaDataSource(DataSource):
    """`spark.readStream.format("fl-kafka")`: Kafka topics as a stream of raw records."""

    @classmethod
    def name(cls) -> str:
        return FORMAT_NAME

    def schema(self) -> StructType:
        return KAFKA_SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KafkaStreamReader(KafkaSourceOptions.parse(dict(self.options)))


@dataclass(frozen=True)
class KafkaRange(InputPartition):
    """Offsets `[start, end)` of one topic partition: one Spark task."""

    topic: str
    partition: int
    start: int
    end: int


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Plans micro-batches as per-partition offset ranges; tasks read them with `read`."""

    def __init__(self, options: KafkaSourceOptions):
        self.options = options
        self._consumer = None
        self._target: Offsets | None = None  # availableNow: never read past this

    def __getstate__(self) -> dict:
        # Tasks get a pickled copy of the reader; the driver's consumer stays behind.
        return {**self.__dict__, "_consumer": None}

    def _driver_consumer(self):
        if self._consumer is None:
            from confluent_kafka import Consumer

            config = consumer_config(
                self.options.bootstrap_servers,
                {"client.id": "fl-kafka-offsets", **self.options.client},
            )
            self._consumer = Consumer(config)
        return self._consumer

    def _pairs(self, timeout: float = 10.0) -> list:
        return topic_partitions(self._driver_consumer(), self.options.topics, timeout=timeout)

    def initialOffset(self) -> dict:
        consumer, pairs = self._driver_consumer(), self._pairs()
        spec = self.options.starting_offsets
        if spec == "earliest":
            return earliest_offsets(consumer, pairs)
        if spec == "latest":
            return end_offsets(consumer, pairs, timeout=self.options.poll_timeout_s)
        earliest = earliest_offsets(consumer, pairs)
        latest = None
        start: Offsets = {}
        for topic, partition in pairs:
            offset = spec.get(topic, {}).get(str(partition), EARLIEST)
            if offset == LATEST:
                latest = latest or end_offsets(consumer, pairs, timeout=self.options.poll_timeout_s)
                offset = latest[topic][str(partition)]
            elif offset == EARLIEST:
                offset = earliest[topic][str(partition)]
            start.setdefault(topic, {})[str(partition)] = offset
        return start

    def _available(self, start: Offsets) -> Offsets:
        """The end of every partition (new partitions start from their first offset).

        Each step of the lookup (the topics' partitions, their first and last offsets) is
        retried with a new client when it times out or stalls (a broker paused or restarting;
        on a loaded local broker, a client that never gets its partition EOF), until
        `pollTimeoutMs` has passed.
        """
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + self.options.poll_timeout_s
        while True:
            step = max(min(_RESEEK_AFTER_S, deadline - time.monotonic()), _MIN_LOOKUP_S)
            try:
                consumer, pairs = self._driver_consumer(), self._pairs(timeout=step)
                known = _merge(earliest_offsets(consumer, pairs, timeout=step), start)
                return end_offsets(consumer, pairs, known, timeout=step)
            except KafkaException:
                if time.monotonic() >= deadline:
                    raise
                log.warning("Kafka offset lookup stalled: retrying with a new client")
                self.stop()

    def prepareForTriggerAvailableNow(self) -> None:
        self._target = self._available({})

    def getDefaultReadLimit(self) -> ReadLimit:
        limit = self.options.max_offsets_per_trigger
        return ReadMaxRows(limit) if limit else ReadAllAvailable()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        end = self._target if self._target is not None else self._available(start)
        end = _merge(start, end)  # partitions the target does not know stay where they are
        if isinstance(limit, ReadMaxRows):
            end = _limit(start, end, limit.max_rows)
        return end

    def reportLatestOffset(self) -> dict | None:
        return None

    def partitions(self, start: dict, end: dict) -> list[KafkaRange]:
        ranges = []
        for topic, parts in end.items():
            for partition, stop in parts.items():
                begin = start.get(topic, {}).get(partition, 0)
                if stop > begin:
                    ranges.append(KafkaRange(topic, int(partition), begin, stop))
        return ranges

    def read(self, partition: KafkaRange) -> Iterator[pa.RecordBatch]:
        yield from read_range(self.options, partition)

    def commit(self, end: dict) -> None:
        """Nothing to do: offsets live in Spark's checkpoint, not in the broker."""

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


# Consumers kept by a Python worker between the tasks it runs (Spark reuses workers), as Spark's
# own Kafka source pools them: creating one (threads, connection, metadata) costs each read task
# tens of milliseconds, several times per micro-batch. Unassigned while idle, so they fetch
# nothing; closed once idle for `_POOL_IDLE_CLOSE_S` (a stopped query's workers live on and run
# other jobs' tasks). An idle consumer still reconnects to its broker, so reader consumers log
# only critical messages (`log_level` 2): a stopped broker would otherwise fill the worker's
# stderr with `Connect to ... failed` until the consumer is closed. Errors of a read surface as
# the read's exception (see `read_range`).
_POOL_IDLE_CLOSE_S = 10.0
_IDLE_CONSUMERS: dict[tuple, list[tuple[float, object]]] = {}
_POOL_LOCK = threading.Lock()
_REAPER: list[threading.Thread] = []


def _pool_key(options: KafkaSourceOptions) -> tuple:
    return (options.bootstrap_servers, tuple(sorted(options.client.items())))


def _take_consumer(options: KafkaSourceOptions):
    with _POOL_LOCK:
        idle = _IDLE_CONSUMERS.get(_pool_key(options))
        if idle:
            return idle.pop()[1]
    return _reader_consumer(options)


def _reader_consumer(options: KafkaSourceOptions):
    from confluent_kafka import Consumer

    client = {"client.id": "fl-kafka-reader", "log_level": 2, **options.client}
    return Consumer(consumer_config(options.bootstrap_servers, client))


def _give_back(options: KafkaSourceOptions, consumer) -> None:
    consumer.unassign()
    with _POOL_LOCK:
        _IDLE_CONSUMERS.setdefault(_pool_key(options), []).append((time.monotonic(), consumer))
        if not _REAPER:
            _REAPER.append(
                threading.Thread(target=_reap_forever, name="fl-kafka-reaper", daemon=True)
            )
            _REAPER[0].start()


def close_idle_consumers(idle_s: float = 0.0) -> int:
    """Close the pooled consumers idle for at least `idle_s` seconds; how many were closed."""
    now = time.monotonic()
    with _POOL_LOCK:
        expired = [
            c for pool in _IDLE_CONSUMERS.values() for since, c in pool if now - since >= idle_s
        ]
        for key, pool in list(_IDLE_CONSUMERS.items()):
            _IDLE_CONSUMERS[key] = [(since, c) for since, c in pool if now - since < idle_s]
    for consumer in expired:
        consumer.close()
    return len(expired)


def _reap_forever() -> None:
    while True:
        time.sleep(1.0)
        close_idle_consumers(_POOL_IDLE_CLOSE_S)


def read_range(options: KafkaSourceOptions, rng: KafkaRange) -> Iterator[pa.RecordBatch]:
    """Records `[rng.start, rng.end)` of one partition as Arrow batches of the Kafka schema."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    consumer = _take_consumer(options)
    consumer.assign([TopicPartition(rng.topic, rng.partition, rng.start)])
    columns: dict[str, list] = {name: [] for name in _ARROW_SCHEMA.names}
    position = rng.start
    progress_at = time.monotonic()  # when the last record arrived
    seek_at = progress_at  # when the consumer was last (re)positioned
    try:
        while position < rng.end:
            now = time.monotonic()
            if now - progress_at > options.poll_timeout_s:
                raise KafkaException(
                    f"{rng.topic}/{rng.partition}: no record of offsets {position}..{rng.end} "
                    f"within {options.poll_timeout_s}s (records deleted or broker down?)"
                )
            if now - max(progress_at, seek_at) > _RESEEK_AFTER_S:
                # A fetch that stalls (seen on a loaded local broker) is retried from
                # `position` by a new client.
                consumer.close()
                consumer = _reader_consumer(options)
                consumer.assign([TopicPartition(rng.topic, rng.partition, position)])
                seek_at = now
            # consume() waits out its timeout unless it got `num_messages`: ask for what is left.
            wanted = min(10_000, rng.end - position)
            for message in consumer.consume(num_messages=wanted, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                offset = message.offset()
                if (
                    offset < position
                    or message.partition() != rng.partition
                    or message.topic() != rng.topic
                ):  # a pooled consumer's fetch from before this assignment
                    continue
                if offset >= rng.end:
                    position = rng.end
                    break
                ts_type, ts_ms = message.timestamp()
                columns["key"].append(message.key())
                columns["value"].append(message.value())
                columns["offset"].append(offset)
                columns["timestamp"].append(ts_ms * 1000 if ts_type else None)
                # confluent-kafka: 1 create time, 2 log-append time; Spark: 0 and 1.
                columns["timestampType"].append(ts_type - 1 if ts_type else None)
                position = offset + 1
                progress_at = time.monotonic()
                if len(columns["offset"]) >= _ROWS_PER_ARROW_BATCH:
                    yield _batch(columns, rng)
                    columns = {name: [] for name in _ARROW_SCHEMA.names}
    except BaseException:
        consumer.close()  # in an unknown state: not reused
        raise
    _give_back(options, consumer)
    if columns["offset"]:
        yield _batch(columns, rng)


def _batch(columns: dict[str, list], rng: KafkaRange) -> pa.RecordBatch:
    rows = len(columns["offset"])
    columns["topic"] = [rng.topic] * rows
    columns["partition"] = [rng.partition] * rows
    arrays = [pa.array(columns[f.name], type=f.type) for f in _ARROW_SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=_ARROW_SCHEMA)


def _merge(base: Offsets, override: Offsets) -> Offsets:
    merged = {t: dict(p) for t, p in base.items()}
    for topic, parts in override.items():
        merged.setdefault(topic, {}).update(parts)
    return merged


def _limit(start: Offsets, end: Offsets, max_rows: int) -> Offsets:
    """Cap the batch at `max_rows` records, split over partitions in proportion to their backlog."""
    backlog = {
        (t, p): max(0, o - start.get(t, {}).get(p, 0))
        for t, parts in end.items()
        for p, o in parts.items()
    }
    total = sum(backlog.values())
    if total <= max_rows:
        return end
    capped = {t: dict(p) for t, p in end.items()}
    for (topic, partition), lag in backlog.items():
        share = max(1, lag * max_rows // total) if lag else 0
        capped[topic][partition] = start.get(topic, {}).get(partition, 0) + min(lag, share)
    return capped


_REGISTERED: set[str] = set()


def register(spark) -> None:
    """Register the `fl-kafka` format with the session (once per session)."""
    from freshlake.spark_compat import session_key

    key = session_key(spark)
    if key not in _REGISTERED:
        spark.dataSource.register(KafkaDataSource)
        _REGISTERED.add(key)
