"""The model registry (MLflow): runs, model versions with lineage, `champion` and `challenger`.

Embedded default: a SQLite store beside the lake, `sqlite:///<lake root's parent>/mlflow.db`,
artifacts in `<lake root's parent>/mlartifacts`. On Databricks, `release.tracking_uri:
databricks` and `release.registry_uri: databricks` (workspace) or `databricks-uc` (Unity
Catalog, `release.model_name: catalog.schema.model`). Only signed models are registered; every
promotion and rollback verifies the registered files' signature first, moves the alias and
records why on the model versions (tags and description).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freshlake.config import Config
from freshlake.release.qualify import read_report
from freshlake.release.signing import SIGNATURE_FILE, SIGNED_FILES, verify_model
from freshlake.training.artifact import PLOT_FILE, read_card

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
ARTIFACT_PATH = "model"
ARTIFACT_FILES = (*SIGNED_FILES, SIGNATURE_FILE, PLOT_FILE)


class RegistryError(RuntimeError):
    """A registry operation that cannot proceed (no champion, nothing to roll back to, ...)."""


@dataclass(frozen=True)
class AliasMove:
    """One alias moved: where it pointed before and now, and why."""

    action: str  # register | promote | rollback | reject
    alias: str
    version: str
    previous_version: str | None
    reason: str


def default_uris(config: Config) -> tuple[str, str]:
    """(tracking URI, artifact root) of the embedded default: beside the lake's root folder."""
    root = config.lake.root
    if "://" in root:
        raise RegistryError(
            f"lake root {root} is not a local folder: set release.tracking_uri (and "
            "release.artifact_root) for the registry"
        )
    parent = Path(root).resolve().parent
    return f"sqlite:///{parent / 'mlflow.db'}", (parent / "mlartifacts").as_uri()


class Registry:
    """The configured MLflow tracking server and model registry, for one registered model."""

    def __init__(self, config: Config):
        # Downloads of a few files need no progress bar in the logs.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow import MlflowClient

        r = config.release
        self.config = config
        self.name = r.model_name
        if r.tracking_uri:
            self.tracking_uri, self.artifact_root = r.tracking_uri, r.artifact_root
        else:
            self.tracking_uri, default_root = default_uris(config)
            self.artifact_root = r.artifact_root or default_root
        self.registry_uri = r.registry_uri or self.tracking_uri
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    # -- reading ---------------------------------------------------------------------------

    def alias_version(self, alias: str) -> str | None:
        """The version number `alias` points at, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException:
            return None

    def model_version(self, version: str):
        return self.client.get_model_version(self.name, str(version))

    def versions(self) -> list[Any]:
        """Every version of the registered model, oldest first."""
        found = self.client.search_model_versions(f"name = '{self.name}'")
        return sorted(found, key=lambda v: int(v.version))

    def version_of(self, model_dir: str | Path) -> str | None:
        """The registered version holding the signed files of `model_dir`, if any."""
        digest = _signature_digest(model_dir)
        for v in self.versions():
            if v.tags.get("signature.digest") == digest:
                return str(v.version)
        return None

    @contextmanager
    def checked_out(self, version: str) -> Iterator[Path]:
        """The version's files in a temporary folder, their signature verified."""
        mv = self.model_version(version)
        tmp = Path(tempfile.mkdtemp(prefix=f"freshlake-v{version}-"))
        try:
            from mlflow.artifacts import download_artifacts

            local = Path(
                download_artifacts(
                    artifact_uri=mv.source, dst_path=str(tmp), tracking_uri=self.tracking_uri
                )
            )
            r = self.config.release
            verify_model(local, r.signing_key_env, r.require_keyed_signature)
            yield local
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------

    def register(self, model_dir: str | Path, alias: str | None = CHALLENGER) -> AliasMove:
        """Log a run for the signed model folder and register it as a new version."""
        r = self.config.release
        signature = verify_model(model_dir, r.signing_key_env, r.require_keyed_signature)
        existing = self.version_of(model_dir)
        if existing is not None:
            raise RegistryError(f"{model_dir} is already registered as version {existing}")
        card, report = read_card(model_dir), read_report(model_dir) or {}
        run_id, artifact_uri = self._log_run(model_dir, card, report)
        self._ensure_registered_model()
        mv = self.client.create_model_version(
            self.name,
            source=f"{artifact_uri}/{ARTIFACT_PATH}",
            run_id=run_id,
            tags=lineage_tags(model_dir, card, report, signature),
            description=f"{card['data']['table']} v{card['data']['version']}, "
            f"qualified {report.get('qualified_at')}",
        )
        version = str(mv.version)
        previous = None
        if alias:
            previous = self.alias_version(alias)
            self.client.set_registered_model_alias(self.name, alias, version)
        return AliasMove("register", alias or "", version, previous, "registered signed model")

    def promote(self, version: str, reason: str) -> AliasMove:
        """Make `version` the champion (its files' signature verified first)."""
        version = str(version)
        with self.checked_out(version):
            pass
        previous = self.alias_version(CHAMPION)
        if previous == version:
            raise RegistryError(f"version {version} is already the champion")
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        self.client.set_model_version_tag(self.name, version, "previous_champion", previous or "")
        self.client.set_model_version_tag(self.name, version, "promoted_because", reason)
        self.client.update_model_version(
            self.name, version, description=f"promoted to champion: {reason}"
        )
        if self.alias_version(CHALLENGER) == version:
            self.client.delete_registered_model_alias(self.name, CHALLENGER)
        return AliasMove("promote", CHAMPION, version, previous, reason)

    def rollback(self, reason: str, to_version: str | None = None) -> AliasMove:
        """Return `champion` to the version it replaced (or `to_version`), verified first."""
        current = self.alias_version(CHAMPION)
        if current is None:
            raise RegistryError(f"{self.name} has no champion to roll back")
        target = to_version or self.model_version(current).tags.get("previous_champion")
        if not target:
            raise RegistryError(
                f"champion version {current} replaced no earlier champion: nothing to roll back "
                "to (name one with --to-version)"
            )
        target = str(target)
        if target == current:
            raise RegistryError(f"version {target} is already the champion")
        with self.checked_out(target):
            pass
        self.client.set_registered_model_alias(self.name, CHAMPION, target)
        self.client.set_model_version_tag(self.name, current, "rolled_back_because", reason)
        self.client.update_model_version(
            self.name, current, description=f"rolled back from champion: {reason}"
        )
        return AliasMove("rollback", CHAMPION, target, current, reason)

    def reject_challenger(self, reason: str) -> AliasMove:
        """The `challenger` alias returns to the champion's version; the rejected one is tagged."""
        current = self.alias_version(CHALLENGER)
        champion = self.alias_version(CHAMPION)
        if current is None or champion is None:
            raise RegistryError(f"{self.name} needs a champion and a challenger")
        self.client.set_model_version_tag(self.name, current, "canary", "failed")
        self.client.set_model_version_tag(self.name, current, "rejected_because", reason)
        self.client.update_model_version(
            self.name, current, description=f"challenger rolled back: {reason}"
        )
        self.client.set_registered_model_alias(self.name, CHALLENGER, champion)
        return AliasMove("reject", CHALLENGER, champion, current, reason)

    def tag(self, version: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version), key, str(value))

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(
                self.name, description="freshlake CTR model (freshlake register / promote)"
            )

    def _experiment_id(self) -> str:
        r = self.config.release
        experiment = self.client.get_experiment_by_name(r.experiment)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(r.experiment, artifact_location=self.artifact_root)

    def _log_run(self, model_dir, card: dict, report: dict) -> tuple[str, str]:
        """A run with the model's params, metrics and files; (run id, artifact URI)."""
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self._experiment_id(), run_name=Path(model_dir).resolve().name)
        run_id = run.info.run_id
        params = {f"training.{k}": v for k, v in (card.get("config") or {}).items()}
        data = card["data"]
        params.update({"data.table": data["table"], "data.version": data["version"]})
        metrics = {}
        for split, result in (card.get("metrics") or {}).items():
            for key, value in (result.get("model") or {}).items():
                metrics[f"{split}.{key}"] = value
        for key, value in (report.get("metrics") or {}).items():
            metrics[f"qualification.{key}"] = value
        now = _now_ms()
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if _finite_number(v)],
            params=[Param(k, str(v)[:500]) for k, v in params.items()],
        )
        for name in ARTIFACT_FILES:
            path = Path(model_dir) / name
            if path.exists():
                self.client.log_artifact(run_id, str(path), ARTIFACT_PATH)
        self.client.set_terminated(run_id)
        return run_id, run.info.artifact_uri


def lineage_tags(model_dir, card: dict, report: dict, signature: dict) -> dict[str, str]:
    """Where the model came from: table, Delta version, feature spec, code; its signature."""
    data = card["data"]
    tags = {
        "lineage.table": data["table"],
        "lineage.table_uri": data["uri"],
        "lineage.delta_version": data["version"],
        "lineage.since_version": data.get("since_version"),
        "lineage.feature_spec_hash": card["feature_spec_hash"],
        "lineage.code_version": card.get("code_version"),
        "lineage.config_hash": card.get("config_hash"),
        "lineage.warm_start": (card.get("training") or {}).get("warm_start"),
        "signature.digest": signature["digest"],
        "signature.keyed": signature["keyed"],
        "qualification.qualified": report.get("qualified"),
        "qualification.worst_slice": report.get("worst_slice"),
        "model_dir": str(Path(model_dir).resolve()),
    }
    return {k: "" if v is None else str(v) for k, v in tags.items()}


def _signature_digest(model_dir) -> str:
    from freshlake.release.signing import read_signature

    return read_signature(model_dir)["digest"]


def _finite_number(value: Any) -> bool:
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
