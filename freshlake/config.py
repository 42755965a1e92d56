"""Typed, validated configuration loaded from YAML files in `conf/`.

Every key can be overridden from the command line with `--set section.key=value`
(the value is parsed as YAML, so `--set sampling.negative_rate=0.1` gives a float).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from freshlake import contract

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
DEFAULT_CONFIG = "local.yaml"
CONFIG_ENV = "FRESHLAKE_CONFIG"


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the bad key."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LakeConfig(Section):
    root: str = "lake"
    engine: Literal["auto", "delta-spark", "delta-rs"] = "auto"
    storage_options: dict[str, str] = Field(default_factory=dict)
    tables: dict[str, str] = Field(default_factory=dict)

    def table_name(self, logical: str) -> str:
        """The configured physical name of a logical table (`impressions`, `examples`, ...)."""
        return self.tables.get(logical, logical)


class SparkConfig(Section):
    # None: use whatever master spark-submit / Databricks / YARN provided.
    master: str | None = "local[2]"
    # A Spark Connect server (`sc://host:port`, or $SPARK_REMOTE): jobs run as its clients and
    # `master`, `local_conf` are the server's business (Databricks serverless, shared clusters).
    remote: str | None = None
    app_name: str = "freshlake"
    conf: dict[str, str] = Field(default_factory=dict)
    # Settings that only make sense when freshlake starts its own local JVM.
    local_conf: dict[str, str] = Field(default_factory=dict)


class KafkaConfig(Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    # auto: Spark's built-in `kafka` source when its jar is on the classpath, else ours.
    source: Literal["auto", "builtin", "python"] = "auto"
    topics: dict[str, str] = Field(
        default_factory=lambda: {"impressions": "impressions", "actions": "actions"}
    )
    # Passed unchanged to the Kafka client (security.protocol, sasl.*, ssl.*, ...).
    client: dict[str, str] = Field(default_factory=dict)


class BrokerConfig(Section):
    host: Literal["127.0.0.1"] = "127.0.0.1"
    port: int = Field(default=19092, ge=1024, le=65535)
    state_dir: str = ".broker"


class GenerateConfig(Section):
    seed: int = 7
    impressions: int = Field(default=200_000, ge=1)
    users: int = Field(default=20_000, ge=1)
    items: int = Field(default=5_000, ge=1)
    start: date = date(2026, 1, 1)
    days: int = Field(default=7, ge=1)
    impressions_per_request: int = Field(default=4, ge=1)
    base_ctr: float = Field(default=0.02, gt=0, lt=1)
    popularity_exponent: float = Field(default=1.1, gt=0)
    duplicate_share: float = Field(default=0.01, ge=0, lt=1)
    malformed_share: float = Field(default=0.005, ge=0, lt=1)
    late_click_share: float = Field(default=0.03, ge=0, lt=1)
    repeat_click_share: float = Field(default=0.05, ge=0, le=1)
    epoch_ms_share: float = Field(default=0.05, ge=0, le=1)  # JSONL timestamps as epoch ms
    like_share: float = Field(default=0.2, ge=0, le=1)
    conversion_share: float = Field(default=0.05, ge=0, le=1)
    formats: list[Literal["jsonl", "parquet"]] = Field(default_factory=lambda: ["jsonl"])
    files_per_day: int = Field(default=1, ge=1)
    max_rows_per_file: int = Field(default=1_000_000, ge=1)  # adds files to a day above this
    workers: int = Field(default=0, ge=0)  # processes; 0 = one per CPU core


class IngestConfig(Section):
    # Largest accepted event time ahead of the ingest clock (clock skew of loggers).
    max_future_seconds: int = Field(default=3600, ge=0)
    min_event_date: date = date(2000, 1, 1)


class LabelConfig(Section):
    actions: list[str] = Field(default_factory=lambda: ["click", "like", "conversion"])
    positive_action: str = "click"
    attribution_window_seconds: int = Field(default=3600, gt=0)
    clock_skew_seconds: int = Field(default=60, ge=0)


class RareItemConfig(Section):
    min_impressions: int = Field(default=100, ge=0)
    boost: float = Field(default=5.0, ge=1.0)
    window_days: int = Field(default=7, ge=1)


class SamplingConfig(Section):
    seed: int = 42
    positive_rate: float = Field(default=1.0, gt=0, le=1)
    negative_rate: float = Field(default=0.05, gt=0, le=1)
    rare_item: RareItemConfig = Field(default_factory=RareItemConfig)


class RecencyConfig(Section):
    half_life_days: float | None = Field(default=None, gt=0)


class WindowConfig(Section):
    days: int = Field(default=7, ge=1)
    blackout_dates: list[date] = Field(default_factory=list)


class QualityConfig(Section):
    max_bad_share: float = Field(default=0.05, ge=0, le=1)
    imputation: dict[str, Any] = Field(default_factory=dict)


class SplitConfig(Section):
    mode: Literal["time", "user_hash"] = "time"
    eval_days: int = Field(default=1, ge=0)
    eval_share: float = Field(default=0.1, ge=0, lt=1)


class FeatureSpec(Section):
    name: str
    kind: Literal["categorical", "numeric", "text"]
    source: str | None = None
    buckets: int = Field(default=100_003, ge=1)
    ngrams: list[int] = Field(default_factory=lambda: [1, 2])
    default: float | str | None = None


class FeaturesConfig(Section):
    spec: list[FeatureSpec] = Field(default_factory=list)

    @field_validator("spec")
    @classmethod
    def _unique_names(cls, spec: list[FeatureSpec]) -> list[FeatureSpec]:
        names = [f.name for f in spec]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature names must be unique, repeated: {dupes}")
        return spec


class TrainingConfig(Section):
    """The trainer (training/): data, loader, model, optimizer, checkpoints (docs/design.md section 6)."""

    table: str = contract.EXAMPLES
    loader: Literal["delta", "petastorm"] = "delta"
    label: str = "label"
    # Row weights (bias correction x recency): used by the loss when `weighted_loss`, and
    # always by the evaluation metrics; None when the table has no weight column.
    weight: str | None = "weight"
    weighted_loss: bool = True
    train_split: str = "train"
    eval_split: str = "eval"
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=256, ge=1)  # per process
    shuffle_buffer: int = Field(default=65_536, ge=1)  # rows shuffled together in memory
    # blocks: permute units and batch-size runs of stored rows (the builder stores rows in hash
    # order); rows: a uniform permutation of every block's rows; auto: blocks on `examples`,
    # rows on other tables (README "Loader").
    shuffle: Literal["auto", "blocks", "rows"] = "auto"
    num_workers: int = Field(default=1, ge=0)  # DataLoader workers per process
    seed: int = 0
    nproc: int = Field(default=1, ge=1)  # processes per node
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl with CUDA, else gloo
    optimizer: Literal["adagrad", "adam", "sgd"] = "adagrad"
    learning_rate: float = Field(default=0.02, gt=0)
    embedding_dim: int = Field(default=16, ge=1)
    # Hashed ids are folded into at most this many embedding rows per feature.
    max_embedding_rows: int = Field(default=65_536, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    activation: Literal["relu", "smelu"] = "relu"
    smelu_beta: float = Field(default=1.0, gt=0)
    checkpoint_every: int = Field(default=200, ge=1)  # optimizer steps
    baseline_feature: str | None = "item_id"  # popularity baseline: weighted CTR per value
    # After the last epoch, shift the output bias so the model is calibrated on its (weighted)
    # train rows: the loss's own optimality condition for the bias (training/refit.py).
    refit_output_bias: bool = True
    # A warm start's refit is shrunk toward its bias: the prior sd (log-odds) of how far the
    # bias moves between the warm start and the new rows (training/refit.py `shrink_shift`).
    refit_prior_sd: float = Field(default=0.1, gt=0)
    # On `fresh_examples` with delayed feedback: the newest share of the matured rows (served
    # time) is held out of training and the bias is refit on it (training/delayed_feedback.py).
    recalibration_share: float = Field(default=0.2, ge=0, lt=1)
    # Training on `fresh_examples` before every window has closed (training/delayed_feedback.py):
    # none | matured_only | importance (ES-DFM-style importance weights).
    delayed_feedback: Literal["none", "matured_only", "importance"] = "matured_only"


class StreamingConfig(Section):
    """The streaming path (streaming/): checkpoints, triggers, watermarks, replay (docs/design.md section 4)."""

    # Checkpoints of the streaming queries; None: `<lake.root>/_checkpoints`.
    checkpoint_root: str | None = None
    trigger_seconds: float = Field(default=2.0, gt=0)
    starting_offsets: str = "earliest"  # earliest | latest | Spark's JSON per-partition offsets
    max_offsets_per_trigger: int | None = Field(default=None, ge=1)
    # How late (event time) an impression or action may arrive and still be joined.
    watermark_delay_seconds: int = Field(default=120, ge=0)
    # Fixed in a query's checkpoint at its first start.
    shuffle_partitions: int = Field(default=2, ge=1)
    # Micro-batch progress as JSON lines; None: `<checkpoint_root>/<query>/metrics.jsonl`.
    metrics_log: str | None = None
    # `freshlake produce`: events/s, and the factor dividing logged action delays.
    produce_rate: float = Field(default=2000.0, gt=0)
    time_compression: float = Field(default=1.0, gt=0)


class PrivacyConfig(Section):
    # Files that held a forgotten user's rows are deleted once removed this long ago (0: at once).
    vacuum_retention_hours: float = Field(default=24, ge=0)
    # Tables searched for a user's rows: `user_id` column, their impressions' actions, and
    # quarantined payloads that mention the user or their impression ids.
    tables: list[str] = Field(
        default_factory=lambda: [
            contract.IMPRESSIONS,
            contract.ACTIONS,
            contract.EXAMPLES,
            contract.FRESH_EXAMPLES,
            contract.QUARANTINE,
        ]
    )


class MaintenanceConfig(Section):
    # Files smaller than this are compacted, per partition, when a partition has min_files of them.
    target_file_mb: float = Field(default=128, gt=0)
    min_files: int = Field(default=4, ge=2)
    # Removed files are deleted once older than this (keeps time travel and running readers safe).
    vacuum_retention_hours: float = Field(default=168, ge=0)


class MonitorConfig(Section):
    """Data-quality monitors (`freshlake monitor`): what is compared and when an alert fires."""

    # Per-source share of impressions: the column naming the source, and the trailing baseline.
    source_column: str = "region"
    baseline_days: int = Field(default=7, ge=1)
    min_baseline_days: int = Field(default=2, ge=1)
    # A source alerts when its share falls below (1 - max_share_drop) x its baseline share.
    max_share_drop: float = Field(default=0.5, gt=0, le=1)
    min_baseline_share: float = Field(default=0.01, ge=0, le=1)  # smaller sources are ignored
    # Daily volume and CTR: alert when |z| > max_z and the relative change > min_relative_change.
    max_z: float = Field(default=4.0, gt=0)
    min_relative_change: float = Field(default=0.3, ge=0)
    # Train/serving skew between `examples` and the latest day of `fresh_examples`.
    max_psi: float = Field(default=0.2, gt=0)
    psi_bins: int = Field(default=10, ge=2)
    psi_top_k: int = Field(default=20, ge=1)
    # Clicks joined into the examples / clicks logged for the same impressions.
    min_label_coverage: float = Field(default=0.9, gt=0, le=1)
    # Age of the last `fresh_examples` commit and of the model (card `created_at`).
    max_fresh_age_minutes: float = Field(default=60, gt=0)
    max_model_age_hours: float = Field(default=48, gt=0)


class ReleaseConfig(Section):
    """The release path (freshlake/release): qualification thresholds, signing, registry, canary."""

    # MLflow. None: a SQLite store beside the lake, sqlite:///<lake root's parent>/mlflow.db, with
    # artifacts in <lake root's parent>/mlartifacts. On Databricks: "databricks" (workspace) and
    # registry_uri "databricks-uc" (Unity Catalog; model_name is then catalog.schema.model).
    tracking_uri: str | None = None
    registry_uri: str | None = None  # None: the tracking URI
    artifact_root: str | None = None  # None: beside the SQLite store (ignored by Databricks)
    experiment: str = "freshlake"
    model_name: str = "freshlake-ctr"
    # Qualification set: rows of this table's `split` the trainers never read (split=eval),
    # optionally only dt >= a start date (the day after a training window).
    qualify_table: str = contract.EXAMPLES
    qualify_split: str = "eval"
    # Against the champion: AUC may drop and NE rise at most this much; PD (relative) at most.
    max_auc_drop: float = Field(default=0.005, ge=0)
    max_ne_increase: float = Field(default=0.01, ge=0)
    max_prediction_difference: float = Field(default=0.5, gt=0)
    # Without a champion (and always): NE at most this, calibration inside the band.
    max_ne: float = Field(default=1.0, gt=0)
    calibration_band: tuple[float, float] = (0.9, 1.1)
    # Calibration is judged with its 95% interval (sampling error of the qualification rows):
    # it fails when the interval lies outside the band, and when the interval is wider than
    # +- this (relative), too few clicks to judge it (README: Releasing models).
    max_calibration_ci: float = Field(default=0.15, gt=0)
    # Slices (region, surface, rare vs head items): those with fewer rows are not judged.
    min_slice_rows: int = Field(default=200, ge=1)
    # A slice whose NE exceeds this fails qualification; None: slices are reported, not judged.
    max_slice_ne: float | None = Field(default=None, gt=0)
    # HMAC-SHA256 key for signatures (environment variable); unset: an unkeyed SHA-256 digest.
    signing_key_env: str = "FRESHLAKE_SIGNING_KEY"
    require_keyed_signature: bool = False
    # Canary: the challenger beside the champion on the newest matured rows of this table; it
    # is rolled back when its log loss exceeds the champion's by more than `canary_margin`
    # (relative) once `canary_min_rows` rows were scored.
    canary_table: str = contract.FRESH_EXAMPLES
    canary_min_rows: int = Field(default=2000, ge=1)
    canary_margin: float = Field(default=0.02, ge=0)
    # Rows are matured when served this long before the newest row; None: the attribution window.
    canary_maturity_seconds: int | None = Field(default=None, ge=0)

    @field_validator("calibration_band")
    @classmethod
    def _ordered(cls, band: tuple[float, float]) -> tuple[float, float]:
        if not 0 < band[0] <= 1 <= band[1]:
            raise ValueError("calibration_band must be (low, high) with 0 < low <= 1 <= high")
        return band


class Config(Section):
    lake: LakeConfig = Field(default_factory=LakeConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    recency: RecencyConfig = Field(default_factory=RecencyConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    # Sections owned by the streaming and training paths; validated by their own models.
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)

    def config_hash(self) -> str:
        """A stable short hash of the effective config, recorded with every job run."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split `a.b.c=value` into the dotted key and the YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path:
    """The config file to load: the argument, $FRESHLAKE_CONFIG, or `conf/local.yaml`.

    `conf/` is the checkout's; an installed wheel carries none, so there it is the working
    directory's (`spark-submit jobs/x.py` from a checkout, with freshlake installed).
    """
    conf_dir = CONF_DIR if CONF_DIR.is_dir() else Path("conf")
    chosen = path or os.environ.get(CONFIG_ENV) or conf_dir / DEFAULT_CONFIG
    candidate = Path(chosen)
    if not candidate.exists() and not candidate.is_absolute() and (conf_dir / candidate).exists():
        candidate = conf_dir / candidate
    if not candidate.exists():
        raise ConfigError(f"config file not found: {chosen}")
    return candidate


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Load, override and validate a config; raise `ConfigError` naming every bad key."""
    source = resolve_config_path(path)
    try:
        tree = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections")
    return build_config(tree, overrides, origin=str(source))


def build_config(
    tree: dict[str, Any],
    overrides: list[str] | dict[str, Any] | None = None,
    origin: str = "config",
) -> Config:
    """Validate a config tree (as loaded from YAML) after applying dotted overrides."""
    tree = copy.deepcopy(tree)
    items = (
        overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    )
    for key, value in items:
        _set_path(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{origin}: {problems}") from exc
