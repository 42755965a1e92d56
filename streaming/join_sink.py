"""The joiner's sink: one micro-batch of the plan's rows -> `fresh_examples` and `fresh_actions`.

- Each impression is written once (`JoinerState`): per impression the row of its earliest
  positive action, or its negative row; a later row for a written impression is dropped and
  counted (`duplicates_dropped`). A null-padded row never follows a match.
- Secondary actions (like, conversion) label `label_<action>` without deciding the row: the sink
  drops exact re-sends among those still within reach and keeps the rest in `fresh_actions`; a
  row is written with every such action seen so far, and one that arrives after its positive row
  was written updates that row in place (a Delta MERGE on impression_id, idempotent). An action
  older than everything the sink still remembers cannot be deduplicated or attributed: it is
  dropped and counted as late.
- Writes are idempotent Delta transactions (application id `joiner/<query id>`, version = batch
  id): a batch replayed after a crash writes nothing twice. The state is derived from the
  committed tables (`restore_state`), so a restart from the checkpoint resumes with exactly what
  was committed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.config import Config
from freshlake.features.labeling import is_attributed, label_column, labeled_actions
from freshlake.features.quality import ACTION_KEY
from freshlake.lake import Lake
from freshlake.streaming.join_plan import DECISION, JOINER_QUERY, SECONDARY
from freshlake.streaming.join_state import EPOCH, Action, JoinerState
from freshlake.streaming.metrics import BatchReport, MetricsRecorder
from freshlake.streaming.queries import batch_watermark, checkpoint_dir, checkpointed_query_id
from freshlake.streaming.upgrades import upgrade_labels

FRESH_EXAMPLES = contract.FRESH_EXAMPLES
FRESH_ACTIONS = contract.FRESH_ACTIONS


def restore_state(lake: Lake, config: Config, watermark: datetime) -> JoinerState:
    """The state as of the committed tables, after a batch that ran with `watermark`."""
    state = JoinerState.empty(config, watermark)
    since = F.lit(state.since())
    if lake.exists(FRESH_EXAMPLES):
        rows = (
            lake.read(FRESH_EXAMPLES)
            .where(F.col("served_at") >= since)
            .select("impression_id", "served_at", "label")
            .collect()
        )
        state.remember_written((r.impression_id, r.served_at, r.label == 1) for r in rows)
    if lake.exists(FRESH_ACTIONS):
        rows = lake.read(FRESH_ACTIONS).where(F.col("action_at") >= since).collect()
        state.add_secondary((r.impression_id, r.action, r.action_at) for r in rows)
    return state


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
                else EPOCH
            )
            self.state = restore_state(self.lake, self.config, previous)
            self.query_id = checkpointed_query_id(self.checkpoint)
        # One Spark job runs the micro-batch; the rest works on its (few) rows on the driver.
        report = self._process(batch.toArrow(), batch_id, f"{self.name}/{self.query_id}")
        self.state.advance(watermark)
        if self.recorder is not None:
            self.recorder.report(report)

    def _process(self, rows: pa.Table, batch_id: int, app_id: str) -> BatchReport:
        state = self.state
        kind = rows.column("kind")
        secondary_rows = rows.filter(pc.equal(kind, SECONDARY)).select(list(ACTION_KEY))
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
        state.remember_written(
            (r["impression_id"], r["served_at"], r["first_action_at"] is not None) for r in fresh
        )
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

    def _upgrades(self, secondary: list[Action]) -> list[tuple[str, datetime, str, datetime]]:
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
