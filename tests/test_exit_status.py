"""Processes that read Delta tables exit cleanly.

With deltalake 1.6.6 and pyarrow 26, `DeltaTable(p).to_pyarrow_table()` reads through delta-rs's
Python-backed filesystem; Arrow's I/O threads may still call into it while the interpreter exits,
and the process aborts (`terminate called without an active exception`, exit 134) in about half
of the runs. The lake reads through Arrow's own filesystem instead; twenty fresh processes show
it (the old way fails at least one of twenty with probability 1 - 0.5**20).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pyarrow as pa

READER = """
import sys
from freshlake.lake import read_table_arrow
table = read_table_arrow(sys.argv[1])
days = sorted({str(d) for d in table.column("dt").to_pylist()})
assert table.num_rows == 300 and days == ["2026-01-01", "2026-01-02", "2026-01-03"], days
"""


def test_twenty_processes_reading_a_table_all_exit_0(lake):
    days = [date(2026, 1, d) for d in (1, 2, 3)]
    rows = pa.table(
        {
            "id": pa.array(range(300), pa.int64()),
            "name": pa.array([f"row-{i}" for i in range(300)]),
            "dt": pa.array([days[i % 3] for i in range(300)], pa.date32()),
        }
    )
    lake.append_arrow("exits", rows, partition_by=["dt"])

    def run(_: int) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-c", READER, lake.uri("exits")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, done.stderr[-500:]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(20)))
    failed = [(code, err) for code, err in results if code != 0]
    assert not failed, f"{len(failed)} of 20 readers failed: {failed[:2]}"
