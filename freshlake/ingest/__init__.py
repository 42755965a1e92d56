"""Batch ingest: log files (JSONL, CSV, Parquet) and the Open Bandit Dataset into Delta tables.

Records are validated by `features.validation` (the same code the streaming bronze ingest
uses); valid rows go to `impressions` / `actions`, every rejected record to `quarantine`.
"""

from pathlib import Path

# The Open Bandit Dataset sample shipped beside the checkout (../shared/data/obd).
OBD_DIR = str(Path(__file__).resolve().parents[3] / "shared" / "data" / "obd")
