"""Delta Lake tables behind one small interface, with two engines (docs/design.md section 5).

`open_lake(config, spark)` returns a `Lake`; its engine is `delta-rs` (Spark tasks write Parquet,
the driver commits every file in one Delta transaction) or `delta-spark` (Spark's own
`format("delta")`), chosen by `lake.engine` (`auto` picks delta-spark when its classes are on the
JVM classpath). Reads always go through the Delta log.

Everything else the project does to a table goes through `Lake` too, on the same engine: deleting
rows by condition, updating rows from driver-side Arrow rows (MERGE), compacting small files,
vacuum, adding nullable columns, and reading a small table or its latest commit.
`read_table_arrow` and `write_arrow_table` read and write a table's Arrow rows without Spark. On delta-rs,
deletes and compaction rewrite only the files concerned and MERGE runs on the driver; delta-spark
runs Spark SQL on the table's path (`freshlake/lake/delta_sql.py`).
"""

from freshlake.lake.catalog import Lake, open_lake
from freshlake.lake.delta_rs import read_table_arrow, write_arrow_table
from freshlake.lake.engine import (
    CommitInfo,
    CompactionResult,
    DeleteResult,
    LakeEngine,
    SchemaMismatchError,
    WriteResult,
)

__all__ = [
    "CommitInfo",
    "CompactionResult",
    "DeleteResult",
    "Lake",
    "LakeEngine",
    "SchemaMismatchError",
    "WriteResult",
    "open_lake",
    "read_table_arrow",
    "write_arrow_table",
]
