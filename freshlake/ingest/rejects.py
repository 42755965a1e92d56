"""Finding a run's rejected records again after its valid rows are written, without a second check
of every record.

The valid pass (the write of the valid rows) observes, on the checked records, how many there
were, how many were rejected, and the hash of each rejected record's source and payload, the
`MAX_REMEMBERED_REJECTS` largest of them (`ValidPassCounts`). The quarantine pass reads the raw
records again and checks only the candidates (`candidates`): those whose hash is remembered and,
when more records were rejected than remembered, every record whose hash is at most the smallest
remembered one (hashes are uniform, so that is the share of the records the remembered hashes do
not cover: all of them on input that is all rejects). A valid record among the candidates is
checked again and dropped, so a hash collision costs a check, never a record; the memory taken
stays bounded whatever the input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from freshlake.features.validation import FAILED_CHECK

# The hash of a record's source index and payload (the payload as check_records keeps it).
REJECT_HASH = "_reject_hash"
KNOWN = "_known_reject"
# How long after its write the valid pass's observed metrics may take to arrive before the
# quarantine pass checks every record instead (a write path that reports none must not hang).
OBSERVATION_WAIT_SECONDS = 30.0
# max_by's largest k: the hashes a valid pass remembers (8 bytes each, per task and merged).
MAX_REMEMBERED_REJECTS = 100_000


def record_hash(source_index: Column, payload: Column) -> Column:
    """The hash both passes compute of a record: of its source's index and its payload."""
    return F.xxhash64(source_index, payload)


def raw_record_hash(source_index: Column, value: Column) -> Column:
    """`record_hash` of a raw record, whose payload check_records keeps as valid UTF-8."""
    return record_hash(source_index, F.make_valid_utf8(value.cast("string")))


@dataclass(frozen=True)
class RememberedRejects:
    """Distinct hashes of rejected records; with `up_to`, every rejected record whose hash is
    larger than `up_to` is among them, the others are not known."""

    hashes: list[int]
    up_to: int | None = None


class ValidPassCounts:
    """What the valid pass observes of the checked records it reads (`DataFrame.observe`)."""

    def __init__(self) -> None:
        self._observation = Observation()

    def observe(self, checked: DataFrame, source_index: str) -> DataFrame:
        """`checked` (check_records output with `source_index`), observed while it is written."""
        rejected = F.col(FAILED_CHECK).isNotNull()
        hashed = F.when(rejected, record_hash(F.col(source_index), F.col("value")))
        return checked.observe(
            self._observation,
            F.count(F.lit(1)).alias("records"),
            F.count_if(rejected).alias("rejected"),
            F.max_by(hashed, hashed, MAX_REMEMBERED_REJECTS).alias("hashes"),
        )

    def arrived(self, seconds: float = OBSERVATION_WAIT_SECONDS) -> bool:
        """True once the write reported the observed metrics; waits up to `seconds` for them.

        `Observation.get` waits forever, and a writer that runs the plan as a nested query (a
        Delta writer may) need not report them: then the caller checks every record again.
        On Spark Connect the metrics come back with the action's result: always True.
        """
        if not hasattr(self._observation, "_jo"):  # a Spark Connect observation
            return True
        handle = self._observation._jo  # noqa: SLF001 - the JVM Observation, set once observed
        if handle is None:  # never observed: nothing can arrive
            return False
        deadline = time.monotonic() + seconds
        while not handle.future().isCompleted():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    @property
    def records(self) -> int:
        """Records checked (blocks until the pass has run)."""
        return self._observation.get["records"]

    @property
    def rejected(self) -> int:
        """Records rejected (blocks until the pass has run)."""
        return self._observation.get["rejected"]

    def remembered(self) -> RememberedRejects:
        """The hashes of the rejected records (blocks until the pass has run)."""
        hashes = self._observation.get["hashes"] or []
        every = self.rejected <= len(hashes)
        return RememberedRejects(sorted(set(hashes)), None if every else min(hashes))


def candidates(raw: DataFrame, remembered: RememberedRejects, source_index: str) -> DataFrame:
    """The records of `raw` that may be rejected ones: hash (`raw_record_hash`) remembered, or
    at most `remembered.up_to`.

    A join with the hashes broadcast (a DataFrame of them, not a constant in the plan).
    """
    rows = [(h, True) for h in remembered.hashes]
    known = raw.sparkSession.createDataFrame(rows, f"{REJECT_HASH} long, {KNOWN} boolean")
    hashed = raw.withColumn(REJECT_HASH, raw_record_hash(F.col(source_index), F.col("value")))
    if remembered.up_to is None:
        return hashed.join(F.broadcast(known), REJECT_HASH, "left_semi").drop(REJECT_HASH)
    joined = hashed.join(F.broadcast(known), REJECT_HASH, "left")
    unknown = F.col(REJECT_HASH) <= F.lit(remembered.up_to)
    return joined.where(F.col(KNOWN).isNotNull() | unknown).drop(REJECT_HASH, KNOWN)
