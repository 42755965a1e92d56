"""The Open Bandit Dataset (ZOZOTOWN) sample as impressions and click actions.

Each CSV row (`<policy>_<campaign>.csv`: random|bts x men|women) is one impression:

- `impression_id` = `obd-<policy>-<campaign>-<row index>`: unique and stable across re-runs.
- `user_id`: OBD has no user id. The four hashed `user_feature_*` columns together describe the
  user, so `user_id` = `obd-u-` + the first 16 hex digits of SHA-256 over them: a pseudo-user
  (rows with the same four features share it).
- `item_id` = `<campaign>-<item_id>`: the men and women campaigns have separate item sets.
- `served_at` = `timestamp`; `position` as is; `surface` = campaign; `model_version` = policy;
  `pred_ctr` absent (OBD logs a propensity, not a CTR prediction).
- `features`: `propensity_score`, `user_feature_0..3` and every `user-item_affinity_K`.

A row with `click` = 1 also gives a `click` action at `served_at + 1 s`: OBD records no click
time, only that the click followed the impression. A `click` value other than 0/1 becomes an
action record with an unknown type, so it is quarantined and counted, never dropped. Both kinds
go through the same validation and idempotent loader as file ingest.
"""

from __future__ import annotations

import hashlib
import re
from functools import partial, reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from freshlake.config import Config
from freshlake.features.timestamps import iso_text, parse_event_time
from freshlake.features.validation import ACTIONS, IMPRESSIONS
from freshlake.ingest import OBD_DIR
from freshlake.ingest.files import finish_run
from freshlake.ingest.loader import QUARANTINE_TABLE, IngestSummary, Source, ingest_sources
from freshlake.ingest.sources import (
    CORRUPT_COLUMN,
    JSON_OPTIONS,
    InputFile,
    list_input_files,
    read_csv_strings,
)
from freshlake.lake import open_lake
from freshlake.runs import JobRun

JOB = "ingest-obd"
FILE_NAME = re.compile(r"(?P<policy>[a-z]+)_(?P<campaign>[a-z]+)\.csv$")
USER_FEATURES = [f"user_feature_{i}" for i in range(4)]
CLICK_DELAY_SECONDS = 1


def policy_and_campaign(path: str) -> tuple[str, str]:
    """(`bts`, `men`) from `.../bts_men.csv`."""
    match = FILE_NAME.search(path.rsplit("/", 1)[-1])
    if match is None:
        raise ValueError(f"{path}: expected an OBD file named <policy>_<campaign>.csv")
    return match["policy"], match["campaign"]


def _pseudo_user(row: DataFrame) -> Column:
    features = [F.col(c) for c in USER_FEATURES if c in row.columns]
    digest = F.substring(F.sha2(F.concat_ws("|", *features), 256), 1, 16)
    return F.when(F.coalesce(*features).isNotNull(), F.concat(F.lit("obd-u-"), digest))


def obd_records(
    rows: DataFrame, policy: str, campaign: str, source_file: str
) -> tuple[DataFrame, DataFrame]:
    """(raw impression records, raw action records) of one OBD CSV read as strings."""
    index = rows.columns[0]  # the unnamed row index
    feature_columns = [
        c
        for c in rows.columns
        if c == "propensity_score" or c.startswith(("user_feature_", "user-item_affinity_"))
    ]
    impression_id = F.concat_ws(
        "-", F.lit("obd"), F.lit(policy), F.lit(campaign), F.col(f"`{index}`")
    )
    user_id = _pseudo_user(rows)
    broken = F.col(CORRUPT_COLUMN).isNotNull()
    impression = F.to_json(
        F.struct(
            impression_id.alias("impression_id"),
            user_id.alias("user_id"),
            F.concat(F.lit(f"{campaign}-"), F.col("item_id")).alias("item_id"),
            F.col("timestamp").alias("served_at"),
            F.col("position").alias("position"),
            F.lit(campaign).alias("surface"),
            F.lit(policy).alias("model_version"),
            F.create_map(*[x for c in feature_columns for x in (F.lit(c), F.col(f"`{c}`"))]).alias(
                "features"
            ),
        ),
        JSON_OPTIONS,
    )
    impressions = rows.select(
        F.when(broken, F.col(CORRUPT_COLUMN)).otherwise(impression).alias("value"),
        F.lit(source_file).alias("source_file"),
        F.when(broken, F.lit("CSV line does not match the header")).alias("parse_error"),
    )
    click = F.trim(F.col("click"))
    action = F.to_json(
        F.struct(
            F.concat(impression_id, F.lit("-click")).alias("action_id"),
            impression_id.alias("impression_id"),
            user_id.alias("user_id"),
            F.when(click == "1", F.lit("click"))
            .otherwise(F.concat(F.lit("click="), F.coalesce(click, F.lit("NULL"))))
            .alias("action"),
            iso_text(
                parse_event_time(F.col("timestamp"))
                + F.make_dt_interval(secs=F.lit(CLICK_DELAY_SECONDS))
            ).alias("action_at"),
        ),
        JSON_OPTIONS,
    )
    actions = rows.where(~broken & ~click.eqNullSafe(F.lit("0"))).select(
        action.alias("value"),
        F.lit(source_file).alias("source_file"),
        F.lit(None).cast("string").alias("parse_error"),
    )
    return impressions, actions


def obd_files(spark: SparkSession, directory: str) -> list[InputFile]:
    """The OBD CSVs of a folder (`random_men.csv`, `bts_women.csv`, ...)."""
    files = list_input_files(spark, [f"{directory.rstrip('/')}/*.csv"], "csv")
    for file in files:
        policy_and_campaign(file.path)
    return files


def ingest_obd(config: Config, spark: SparkSession, directory: str = OBD_DIR) -> IngestSummary:
    """Ingest every OBD CSV in `directory` as impressions and click actions, idempotently.

    The folder is one source per kind (its app id covers every file's identity), so the
    dataset lands in one commit per table; rows keep their own `source_file`.
    """
    files = obd_files(spark, directory)
    impressions, actions = [], []
    for file in files:
        policy, campaign = policy_and_campaign(file.path)
        rows = read_csv_strings(spark, file.path)
        file_impressions, file_actions = obd_records(rows, policy, campaign, file.path)
        impressions.append(file_impressions)
        actions.append(file_actions)
    dataset_id = hashlib.sha256("\n".join(f.fingerprint for f in files).encode()).hexdigest()[:24]
    sources = [
        Source(
            contract,
            directory,
            f"freshlake-obd-{contract.source}-{dataset_id}",
            max(f.modified_at for f in files),
            partial(reduce, DataFrame.unionByName, frames),
        )
        for contract, frames in ((IMPRESSIONS, impressions), (ACTIONS, actions))
    ]
    lake = open_lake(config, spark)
    with JobRun(JOB, config, lake) as run:
        summary = IngestSummary(run.run_id)
        run.details["files"] = [f.path for f in files]
        with run.timed("ingest"):
            summary.outcomes = ingest_sources(
                lake, config, sources, run_id=run.run_id, now=run.started_at
            )
        finish_run(run, summary, ["impressions", "actions", QUARANTINE_TABLE])
    return summary
