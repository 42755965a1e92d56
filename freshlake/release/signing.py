"""Model signatures: a digest over the weights, the model card and the qualification report.

`sign_model` writes `signature.json`: each signed file's SHA-256, and over their canonical
listing an HMAC-SHA256 with the key in the environment variable `release.signing_key_env` when
it is set (`keyed: true`), else a plain SHA-256 (`keyed: false`, which proves integrity, not
origin). `verify_model` recomputes it; a missing signature, a changed, added or missing file or
a wrong key raises `SignatureError`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from freshlake.release.qualify import REPORT_FILE, read_report
from freshlake.training.artifact import CARD_FILE, MODEL_FILE

SIGNATURE_FILE = "signature.json"
SIGNED_FILES = (MODEL_FILE, CARD_FILE, REPORT_FILE)


class SignatureError(RuntimeError):
    """The model is unsigned, its files changed after signing, or the key does not match."""


def file_digests(model_dir: str | Path) -> dict[str, str]:
    """SHA-256 of each signed file of the folder."""
    digests = {}
    for name in SIGNED_FILES:
        path = Path(model_dir) / name
        if not path.exists():
            raise SignatureError(f"{model_dir} has no {name}")
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digests[name] = h.hexdigest()
    return digests


def _digest(files: dict[str, str], key: bytes | None) -> str:
    message = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _key(env: str) -> bytes | None:
    value = os.environ.get(env)
    return value.encode() if value else None


def _key_id(key: bytes) -> str:
    """Names the key without revealing it (a hash of a hash)."""
    return hashlib.sha256(b"freshlake-key-id:" + key).hexdigest()[:12]


def sign_model(model_dir: str | Path, key_env: str) -> dict[str, Any]:
    """Sign a qualified model folder; refuses one without a passing qualification report."""
    report = read_report(model_dir)
    if report is None:
        raise SignatureError(f"{model_dir} was never qualified (run `freshlake qualify` first)")
    if not report.get("qualified"):
        failed = ", ".join(report.get("failed", [])) or "?"
        raise SignatureError(f"{model_dir} did not pass qualification ({failed}): not signed")
    key = _key(key_env)
    files = file_digests(model_dir)
    signature = {
        "algorithm": "hmac-sha256" if key else "sha256",
        "keyed": key is not None,
        "key_env": key_env,
        "key_id": _key_id(key) if key else None,
        "files": files,
        "digest": _digest(files, key),
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = Path(model_dir) / SIGNATURE_FILE
    path.write_text(json.dumps(signature, indent=2, sort_keys=True) + "\n")
    return signature


def read_signature(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / SIGNATURE_FILE
    if not path.exists():
        raise SignatureError(f"{model_dir} is not signed (no {SIGNATURE_FILE})")
    return json.loads(path.read_text())


def verify_model(model_dir: str | Path, key_env: str, require_keyed: bool = False) -> dict:
    """The folder's signature when every signed file is as signed; else `SignatureError`."""
    signature = read_signature(model_dir)
    if require_keyed and not signature.get("keyed"):
        raise SignatureError(f"{model_dir} carries an unkeyed signature; a keyed one is required")
    files = file_digests(model_dir)
    changed = sorted(
        name
        for name in set(files) | set(signature["files"])
        if files.get(name) != signature["files"].get(name)
    )
    if changed:
        raise SignatureError(f"{model_dir}: {', '.join(changed)} changed after signing")
    key = None
    if signature.get("keyed"):
        key = _key(signature.get("key_env") or key_env)
        if key is None:
            raise SignatureError(
                f"{model_dir} was signed with a key; set ${signature.get('key_env') or key_env} "
                "to verify it"
            )
        if _key_id(key) != signature.get("key_id"):
            raise SignatureError(f"{model_dir} was signed with another key")
    if not hmac.compare_digest(_digest(files, key), signature["digest"]):
        raise SignatureError(f"{model_dir}: the signature does not match its files")
    return signature
