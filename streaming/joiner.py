"""The online joiner: impressions x actions from Kafka -> `fresh_examples`, exactly once.

Semantics (DESIGN.md sections 3 and 4), one row per kept impression:

- A stream-stream LEFT OUTER join of impressions with the positive action (`labels.
  positive_action`, e.g. click) on `impression_id`, with event-time watermarks on `served_at` and
  `action_at` and the attribution window as the time-range condition
  (`served_at - clock_skew <= action_at <= served_at + window`). An impression is written as a
  positive in the micro-batch where its first attributed click arrives, and as a negative when
  the watermark passes the end of its window without one (Spark emits the null-padded row then).
- Each impression is written once. The sink remembers every impression it wrote while input
  for it can still arrive, i.e. until Spark's watermark passes its window (`JoinerState`,
  rebuilt from the tables on restart), and drops a later row for it: a second click of a
  written positive (repeated clicks can come minutes apart) and a re-sent impression's copy.
  Deduplicating on the driver instead of in Spark state operators saves each micro-batch two
  stateful stages; the memory is bounded by the watermark either way. The duplicates dropped
  are counted in the metrics (`duplicates_dropped`). A null-padded row never follows a match.
- Other configured actions (like, conversion) label `label_<action>` without deciding the row:
  the sink drops exact re-sends among those still within reach and keeps the rest in
  `fresh_actions`; a row is written with every such action seen so far, and one that arrives
  after its positive row was written updates that row in place (a Delta MERGE on
  impression_id, idempotent). An action older than everything the sink still remembers cannot
  be deduplicated or attributed: it is dropped and counted as late.
- Impressions are screened like the batch builder (`freshlake.features.quality.impression_problem`);
  records failing validation are dropped here (the bronze ingest quarantines them). Events later
  than the watermark are dropped by Spark and counted in the metrics (`late_rows_dropped`); the
  bronze tables keep them.
- Labels, sampling, weights and feature transforms are `features/` functions, the very ones the
  batch builder calls, applied inside the streaming plan after the join (`stream_examples`), so
  the negatives that sampling drops never reach the driver; rarity comes from the latest
  `item_stats` snapshot (a static table). The sink only picks one row per impression, sets the
  secondary labels from the actions seen so far and writes. `recency_weight` is measured from
  the micro-batch's timestamp; in `split.mode=time` every fresh row is `train` (the eval days
  are a property of a batch window), `user_hash` splits as in batch.
- Watermarks: Spark's `min` policy over its two watermark inputs, the impressions and the
  actions (one watermark over every labeled action type, which both branches of the plan
  share, so any action advances it): negatives are emitted as the slower of the two advances,
  so a long pause of all actions delays negatives (never drops data).
- Writes go through foreachBatch with idempotent Delta transactions (application id
  `joiner/<query id>`, version = batch id): a batch replayed after a crash writes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from freshlake.config import Config
from freshlake.features.examples import to_examples
from freshlake.features.labeling import (
    action_time_columns,
    attribution_condition,
    is_attributed,
    label_column,
    label_columns,
    labeled_actions,
)
from freshlake.features.quality import configured_fill_values, impression_problem
from freshlake.features.sampling import is_sampled, sampling_columns
from freshlake.features.schemas import IMPRESSION_SCHEMA
from freshlake.features.splits import split_column
from freshlake.features.transforms import apply_feature_spec
from freshlake.features.validation import CONTRACTS, validate
from freshlake.features.weights import weight_columns
from freshlake.lake import Lake
from freshlake.runs import latest_run_details
from freshlake.streaming.bronze import raw_records
from freshlake.streaming.metrics import BatchReport, MetricsRecorder
from freshlake.streaming.queries import (
    batch_watermark,
    checkpoint_dir,
    checkpointed_query_id,
    prepare_session,
    start_query,
)
from freshlake.streaming.source import read_kafka_stream
from freshlake.streaming.upgrades import upgrade_labels

log = logging.getLogger(__name__)

JOINER_QUERY = "joiner"
FRESH_EXAMPLES = "fresh_examples"
FRESH_ACTIONS = "fresh_actions"
DECISION, SECONDARY = "decision", "secondary"
IMPRESSION_FIELDS = [
    f.name for f in IMPRESSION_SCHEMA if f.name not in ("source_file", "ingest_run_id", "dt")
]


# -- the streaming plan ---------------------------------------------------------------------------


def _validated(spark: SparkSession, config: Config, kind: str) -> DataFrame:
    raw = raw_records(read_kafka_stream(spark, config, config.kafka.topics[kind]))
    valid, _rejected = validate(raw, CONTRACTS[kind], config, run_id=JOINER_QUERY)
    return valid


def impression_stream(spark: SparkSession, config: Config) -> DataFrame:
    """Valid, trainable impressions with a watermark (re-sends are dropped by the sink)."""
    impressions = _validated(spark, config, "impressions")
    impressions = impressions.where(impression_problem(impressions.columns).isNull())
    return impressions.select(*IMPRESSION_FIELDS).withWatermark(
        "served_at", f"{config.streaming.watermark_delay_seconds} seconds"
    )


def action_stream(spark: SparkSession, config: Config) -> DataFrame:
    """Valid actions of the configured types with a watermark."""
    actions = _validated(spark, config, "actions")
    return (
        actions.where(F.col("action").isin(labeled_actions(config.labels)))
        .select("impression_id", "action", "action_at")
        .withWatermark("action_at", f"{config.streaming.watermark_delay_seconds} seconds")
    )


def joined_stream(
    impressions: DataFrame,
    actions: DataFrame,
    config: Config,
    item_counts: DataFrame | None = None,
    fill_values: Mapping[str, float] | None = None,
) -> DataFrame:
    """Finished example rows (`kind` = decision) and secondary actions (`kind` = secondary).

    Decision rows are impression LEFT OUTER JOIN its positive actions (a negative is emitted
    once the watermark passes its window), turned into `fresh_examples` rows inside the plan
    (`stream_examples`), so negatives the sampling drops never leave Spark. One schema: the
    example columns, `kind`, `action`, `action_at`; secondary rows fill only kind,
    impression_id, action and action_at.
    """
    labels = config.labels
    positive = actions.where(F.col("action") == labels.positive_action).select(
        F.col("impression_id").alias("_a_impression_id"), F.col("action_at").alias("_a_action_at")
    )
    condition = (F.col("impression_id") == F.col("_a_impression_id")) & attribution_condition(
        F.col("served_at"), F.col("_a_action_at"), labels
    )
    pairs = impressions.join(positive, condition, "leftOuter").select(
        *IMPRESSION_FIELDS,
        F.when(F.col("_a_action_at").isNotNull(), F.lit(labels.positive_action)).alias("action"),
        F.col("_a_action_at").alias("action_at"),
    )
    decisions = stream_examples(pairs, config, item_counts, fill_values)
    secondary = actions.where(F.col("action") != labels.positive_action).select(
        F.lit(SECONDARY).alias("kind"), "impression_id", "action", "action_at"
    )
    return decisions.withColumn("kind", F.lit(DECISION)).unionByName(
        secondary, allowMissingColumns=True
    )


def stream_examples(
    pairs: DataFrame,
    config: Config,
    item_counts: DataFrame | None,
    fill_values: Mapping[str, float] | None,
) -> DataFrame:
    """Impression x positive-action rows as `fresh_examples` rows, by the batch builder's functions.

    Labels come from the row's own positive action; secondary labels are set by the sink, which
    knows the actions of earlier batches. Recency is measured from the micro-batch's timestamp
    (`current_timestamp()` is fixed per batch and replayed with it). `run_id` is the query's
    name until the sink adds the batch id.
    """
    labels, spec = config.labels, config.features.spec
    labeled = label_columns(action_time_columns(pairs, labels), labels)
    sampled = sampling_columns(labeled, config.sampling, item_counts)
    kept = sampled.where(is_sampled(config.sampling))
    featured = apply_feature_spec(kept, spec, fill_values)
    batch_time = F.current_timestamp()
    weighted = weight_columns(featured, config.recency, batch_time)
    if config.split.mode == "user_hash":
        split = split_column(weighted, config.split, batch_time)
    else:  # a time split's eval days belong to a batch window: every fresh row trains
        split = weighted.withColumn("split", F.lit("train"))
    return to_examples(split, labels, spec, source="stream", run_id=JOINER_QUERY)


# -- what the joiner remembers between micro-batches ----------------------------------------------


@dataclass
class JoinerState:
    """Impressions written, and secondary actions seen, still within reach of new input.

    Bounded by Spark's event-time watermark (read from the checkpoint's offset log): once a
    batch's watermark passed `served_at + window`, Spark has decided every impression served
    before and drops later actions for it as late, so after that batch an entry older than
    `watermark - keep` is never needed (keep = window + clock skew + watermark delay, the delay
    as a margin). `watermark` is that of the last batch processed. Derived from the committed
    tables (`restore`), so a restart from the checkpoint resumes with exactly what was
    committed; updated only after a batch's writes succeeded.
    """

    keep: timedelta
    written: dict[str, datetime] = field(default_factory=dict)  # impression_id -> served_at
    positives: dict[str, datetime] = field(default_factory=dict)  # the written positives
    secondary: dict[str, set[tuple[str, datetime]]] = field(default_factory=dict)
    watermark: datetime | None = None  # naive UTC, as Spark returns timestamps

    @classmethod
    def empty(cls, config: Config, watermark: datetime | None = None) -> JoinerState:
        labels = config.labels
        keep = timedelta(
            seconds=labels.attribution_window_seconds
            + labels.clock_skew_seconds
            + config.streaming.watermark_delay_seconds
        )
        return cls(keep=keep, watermark=watermark)

    @classmethod
    def restore(cls, lake: Lake, config: Config, watermark: datetime) -> JoinerState:
        """The state as of the committed tables, after a batch that ran with `watermark`."""
        state = cls.empty(config, watermark)
        since = F.lit(state.since())
        if lake.exists(FRESH_EXAMPLES):
            rows = (
                lake.read(FRESH_EXAMPLES)
                .where(F.col("served_at") >= since)
                .select("impression_id", "served_at", "label")
                .collect()
            )
            state.written = {r.impression_id: r.served_at for r in rows}
            state.positives = {r.impression_id: r.served_at for r in rows if r.label == 1}
        if lake.exists(FRESH_ACTIONS):
            rows = lake.read(FRESH_ACTIONS).where(F.col("action_at") >= since).collect()
            state.add_secondary((r.impression_id, r.action, r.action_at) for r in rows)
        return state

    def since(self) -> datetime:
        """Entries older than this are out of reach of any input Spark still accepts."""
        return (self.watermark or datetime(1970, 1, 1)) - self.keep

    def add_secondary(self, rows) -> None:
        for impression_id, action, action_at in rows:
            self.secondary.setdefault(impression_id, set()).add((action, action_at))

    def new_secondary(self, rows) -> tuple[list[bool], int]:
        """(per row of `rows`: not seen before, count of late ones): exact re-sends of an action
        remembered, or repeated within `rows`, are dropped, and so are actions older than
        everything remembered (`since`), which can neither be deduplicated nor attributed."""
        since, seen, keep, late = self.since(), set(), [], 0
        for row in rows:
            impression_id, action, action_at = row
            too_late = action_at < since
            late += too_late
            known = row in seen or (action, action_at) in self.secondary.get(impression_id, ())
            keep.append(not too_late and not known)
            seen.add(row)
        return keep, late

    def advance(self, watermark: datetime) -> None:
        """Move to a newer watermark and forget what fell out of reach."""
        if self.watermark is not None and watermark <= self.watermark:
            return
        self.watermark = watermark
        since = self.since()
        self.written = {k: v for k, v in self.written.items() if v >= since}
        self.positives = {k: v for k, v in self.positives.items() if v >= since}
        for key in [k for k, acts in self.secondary.items() if max(t for _, t in acts) < since]:
            del self.secondary[key]


# -- one micro-batch ------------------------------------------------------------------------------


class JoinerSink:
    """The foreachBatch function of the joiner (see the module docstring for the semantics)."""

    def __init__(
        self,
        config: Config,
        lake: Lake,
        recorder: MetricsRecorder | None = None,
        name: str = JOINER_QUERY,
    ):
        self.config = config
        self.lake = lake
        self.recorder = recorder
        self.name = name
        self.checkpoint = checkpoint_dir(config, name)
        self.query_id: str | None = None
        self.state: JoinerState | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        watermark = batch_watermark(self.checkpoint, batch_id).replace(tzinfo=None)
        if self.state is None:
            # As of the batch before: this one decides the impressions its watermark passed
            # since then (a backlog can move it by hours), and needs what came for them. Spark
            # keeps the offset log of at least the last 100 batches.
            previous = (
                batch_watermark(self.checkpoint, batch_id - 1).replace(tzinfo=None)
                if batch_id > 0
                else datetime(1970, 1, 1)
            )
            self.state = JoinerState.restore(self.lake, self.config, previous)
            self.query_id = checkpointed_query_id(self.checkpoint)
        # One Spark job runs the micro-batch; the rest works on its (few) rows on the driver.
        report = self._process(batch.toArrow(), batch_id, f"{self.name}/{self.query_id}")
        self.state.advance(watermark)
        if self.recorder is not None:
            self.recorder.report(report)

    def _process(self, rows: pa.Table, batch_id: int, app_id: str) -> BatchReport:
        state = self.state
        kind = rows.column("kind")
        secondary_rows = rows.filter(pc.equal(kind, SECONDARY)).select(
            ["impression_id", "action", "action_at"]
        )
        actions = [
            (r["impression_id"], r["action"], r["action_at"])
            for r in _naive_times(secondary_rows).to_pylist()
        ]
        keep, late = state.new_secondary(actions)
        secondary = [a for a, kept in zip(actions, keep, strict=True) if kept]
        secondary_rows = secondary_rows.filter(pa.array(keep, pa.bool_()))
        decisions = rows.filter(pc.equal(kind, DECISION))
        examples = _one_row_per_impression(decisions.drop_columns(["kind", "action", "action_at"]))
        keys = _naive_times(examples.select(["impression_id", "served_at", "first_action_at"]))
        # A later click of a written positive, or a re-sent impression's copy, decides nothing.
        is_fresh = [i not in state.written for i in keys.column("impression_id").to_pylist()]
        examples = examples.filter(pa.array(is_fresh, pa.bool_()))
        fresh = keys.filter(pa.array(is_fresh, pa.bool_())).to_pylist()
        this_batch = JoinerState(state.keep)
        this_batch.add_secondary(secondary)
        examples = self._finish(examples, fresh, this_batch, batch_id)
        # fresh_actions is written last: a restart restores the state from the tables, so a batch
        # replayed after a crash finds its actions remembered only when everything else is done.
        written, replayed = {}, False
        if examples.num_rows:
            result = self.lake.append_arrow(
                FRESH_EXAMPLES, examples, partition_by=["dt"], app_id=app_id, app_version=batch_id
            )
            written[FRESH_EXAMPLES] = result.rows
            replayed = result.skipped
        upgrades = self._upgrades(secondary)
        if upgrades:
            written["upgraded"] = upgrade_labels(
                self.lake, FRESH_EXAMPLES, upgrades, self.config.labels
            )
        if secondary:
            dt = pc.cast(secondary_rows.column("action_at"), pa.date32())
            self.lake.append_arrow(
                FRESH_ACTIONS,
                secondary_rows.append_column("dt", dt),
                partition_by=["dt"],
                app_id=app_id,
                app_version=batch_id,
            )
            written[FRESH_ACTIONS] = len(secondary)
        committed_at = datetime.now(UTC)
        positives = [r for r in fresh if r["first_action_at"] is not None]
        state.written.update({r["impression_id"]: r["served_at"] for r in fresh})
        state.positives.update({r["impression_id"]: r["served_at"] for r in positives})
        state.add_secondary(secondary)
        return BatchReport(
            batch_id=batch_id,
            committed_at=committed_at,
            rows_written=written,
            skipped=replayed,
            late_rows_dropped=late,
            duplicates_dropped=(decisions.num_rows - len(fresh))
            + (len(actions) - len(secondary) - late),
            latencies_s=[
                (committed_at - r["first_action_at"].replace(tzinfo=UTC)).total_seconds()
                for r in positives
            ],
        )

    def _finish(
        self, examples: pa.Table, fresh: list[dict], this_batch: JoinerState, batch_id: int
    ) -> pa.Table:
        """Secondary labels from every action seen so far (earlier batches and this one), and
        the batch's run_id."""
        labels = self.config.labels
        attributed = [
            {
                action
                for source in (self.state.secondary, this_batch.secondary)
                for action, at in source.get(r["impression_id"], ())
                if is_attributed(r["served_at"], at, labels)
            }
            for r in fresh
        ]
        for action in labeled_actions(labels):
            if action != labels.positive_action:
                flags = pa.array([int(action in names) for names in attributed], pa.int32())
                examples = _replace_column(examples, label_column(action), flags)
        run_ids = pa.array([f"{self.name}-{batch_id}"] * examples.num_rows, pa.string())
        return _replace_column(examples, "run_id", run_ids)

    def _upgrades(self, secondary) -> list[tuple[str, datetime, str, datetime]]:
        """Secondary actions inside the window of a positive written in an earlier batch."""
        found = []
        for impression_id, action, action_at in secondary:
            served_at = self.state.positives.get(impression_id)
            if served_at is not None and is_attributed(served_at, action_at, self.config.labels):
                found.append((impression_id, served_at, action, action_at))
        return found


def _one_row_per_impression(examples: pa.Table) -> pa.Table:
    """Per impression, the row of its earliest positive action (or its negative row)."""
    ordered = examples.sort_by(
        [("impression_id", "ascending"), ("first_action_at", "ascending", "at_end")]
    )
    ids = ordered.column("impression_id").to_pylist()
    first = [i for i, key in enumerate(ids) if i == 0 or key != ids[i - 1]]
    return ordered.take(pa.array(first, pa.int64()))


def _replace_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(name)
    field = table.schema.field(index)
    return table.set_column(index, field, values.cast(field.type))


def _naive_times(table: pa.Table) -> pa.Table:
    """Timestamp columns as naive UTC, as Spark's `collect` returns them (the state's keys)."""
    columns = [
        column.cast(pa.timestamp(column.type.unit))
        if pa.types.is_timestamp(column.type) and column.type.tz
        else column
        for column in table.columns
    ]
    return pa.table(columns, names=table.column_names)


# -- static inputs and the query ------------------------------------------------------------------


def latest_item_counts(lake: Lake) -> DataFrame | None:
    """item_id, impressions of the newest `item_stats` snapshot (None without item_stats)."""
    if not lake.exists("item_stats"):
        return None
    stats = lake.read("item_stats")
    newest = stats.agg(F.max("window_end")).first()[0]
    if newest is None:
        return None
    counts = stats.where(F.col("window_end") == F.lit(newest)).select("item_id", "impressions")
    return F.broadcast(counts.localCheckpoint())


def stream_fill_values(lake: Lake, config: Config) -> dict[str, float]:
    """Imputation values: configured ones, else those of the latest batch build (job_runs)."""
    values = dict(configured_fill_values(config.features.spec, config.quality))
    numeric = [f.name for f in config.features.spec if f.kind == "numeric"]
    if all(n in values for n in numeric):
        return values
    built = (latest_run_details(lake, "build-training-set") or {}).get("fill_values", {})
    values = {**{k: float(v) for k, v in built.items()}, **values}
    return values


def start_joiner(
    spark: SparkSession,
    config: Config,
    lake: Lake,
    recorder: MetricsRecorder | None = None,
    available_now: bool = False,
    name: str = JOINER_QUERY,
) -> StreamingQuery:
    """Start the online joiner query (resumes from its checkpoint)."""
    prepare_session(spark, config)
    boosted = config.sampling.rare_item.boost != 1.0
    item_counts = latest_item_counts(lake) if boosted else None
    if item_counts is None and boosted:
        log.warning("no item_stats table: the rare-item boost is off for this run")
    fill_values = stream_fill_values(lake, config)
    missing = [
        f.name
        for f in config.features.spec
        if f.kind == "numeric" and f.name not in fill_values and f.default is None
    ]
    if missing:
        raise ValueError(
            f"numeric features {missing} have no imputation value for the stream: set "
            "quality.imputation or a spec default, or run build-training-set first"
        )
    stream = joined_stream(
        impression_stream(spark, config),
        action_stream(spark, config),
        config,
        item_counts,
        fill_values,
    )
    sink = JoinerSink(config, lake, recorder, name)
    return start_query(stream, name, config, sink, available_now=available_now)


__all__ = [
    "FRESH_ACTIONS",
    "FRESH_EXAMPLES",
    "JOINER_QUERY",
    "JoinerSink",
    "JoinerState",
    "joined_stream",
    "start_joiner",
    "stream_examples",
]
