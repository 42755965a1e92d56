"""Deterministic hashing as Spark Column expressions: uniform draws and hash buckets.

Spark's `xxhash64` is a pure function of its inputs, so the same id gives the same value on any
cluster size, partitioning or run; this is what makes sampling and bucketing reproducible.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

# 53 bits: the exact integer range of a double, so u = bits / 2^53 is uniform on [0, 1).
_UNIT_BITS = 53
_UNIT_MASK = (1 << _UNIT_BITS) - 1


def hash_unit(seed: int | str, key: Column | str) -> Column:
    """A uniform draw in [0, 1) determined by `(seed, key)`: xxhash64 masked to 53 bits / 2^53."""
    bits = F.xxhash64(F.lit(seed), _as_col(key)).bitwiseAND(F.lit(_UNIT_MASK))
    return bits.cast("double") / float(1 << _UNIT_BITS)


def hash_bucket(salt: str, value: Column | str, buckets: int) -> Column:
    """A bucket id in [0, buckets) for `value`, salted so equal values of different features differ.

    A null value gets its own stable bucket (the hash of the salt alone), not an error.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, not {buckets}")
    return F.pmod(F.xxhash64(F.lit(salt), _as_col(value)), F.lit(buckets)).cast("bigint")


def _as_col(value: Column | str) -> Column:
    return F.col(value) if isinstance(value, str) else value
