"""Arrow schemas of the generated files (contract 1; records as in docs/design.md section 2.1)."""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
ACTION_TYPES = ("click", "like", "conversion")
EPOCH_MS = "_epoch_ms"  # hidden column: render this record's timestamp as epoch ms in JSONL

IMPRESSIONS_SCHEMA = pa.schema(
    [
        ("impression_id", pa.string()),
        ("request_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("served_at", TIMESTAMP),
        ("position", pa.int32()),
        ("surface", pa.string()),
        ("region", pa.string()),
        ("model_version", pa.string()),
        ("pred_ctr", pa.float64()),
        (
            "features",
            pa.struct([("device", pa.string()), ("hour", pa.int32()), ("query", pa.string())]),
        ),
    ]
)

ACTIONS_SCHEMA = pa.schema(
    [
        ("action_id", pa.string()),
        ("impression_id", pa.string()),
        ("user_id", pa.string()),
        ("action", pa.string()),
        ("action_at", TIMESTAMP),
        ("value", pa.float64()),
    ]
)

# truth/impressions.parquet: one row per generated (unique, well-formed) impression.
TRUTH_IMPRESSIONS_SCHEMA = pa.schema(
    [
        ("impression_id", pa.string()),
        ("item_id", pa.string()),
        ("position", pa.int32()),
        ("hour", pa.int32()),
        ("p_click", pa.float64()),  # true probability of a click within the window
        ("clicked", pa.bool_()),  # a click within the attribution window
        ("first_click_delay_s", pa.float64()),  # null: never clicked; may exceed the window
        ("liked", pa.bool_()),  # a like within the attribution window
        ("converted", pa.bool_()),  # a conversion within the attribution window
    ]
)

# truth/items.parquet: the catalog the impressions were drawn from.
TRUTH_ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("true_ctr", pa.float64()),  # P(click within window), marginal over position and hour
        ("popularity", pa.float64()),  # probability that an impression shows this item
        ("category", pa.int32()),
        ("impressions", pa.int64()),  # unique impressions generated
        ("clicks", pa.int64()),  # of those, clicked within the window
    ]
)


def with_epoch_ms(schema: pa.Schema) -> pa.Schema:
    """The schema plus the hidden `_epoch_ms` rendering flag."""
    return schema.append(pa.field(EPOCH_MS, pa.bool_()))
