"""Train/eval split: by time (the window's last `eval_days` days are eval) or by a user hash."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from freshlake.config import SplitConfig
from freshlake.features.hashing import hash_unit

# Salt of the user-hash split, independent of the sampling seed.
USER_SPLIT_SALT = "freshlake-split"


def split_expression(split: SplitConfig, window_end: datetime | Column) -> Column:
    """`"eval"` or `"train"` for a row (needs served_at, and user_id in user_hash mode).

    time: eval iff served_at >= window_end - eval_days. user_hash: eval iff
    hash_unit(salt, user_id) < eval_share, so a user is in one split only.
    """
    if split.mode == "user_hash":
        is_eval = hash_unit(USER_SPLIT_SALT, F.col("user_id")) < F.lit(split.eval_share)
    else:
        end = window_end if isinstance(window_end, Column) else F.lit(window_end)
        cutoff = end - F.expr(f"INTERVAL {split.eval_days} DAYS")
        is_eval = F.col("served_at") >= cutoff
    return F.when(is_eval, F.lit("eval")).otherwise(F.lit("train"))


def split_column(df: DataFrame, split: SplitConfig, window_end: datetime | Column) -> DataFrame:
    """Add `split` (train|eval) to `df`."""
    return df.withColumn("split", split_expression(split, window_end))
