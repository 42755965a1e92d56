"""Signatures: only qualified models are signed; any change after signing is caught."""

from __future__ import annotations

import json

import pytest

from freshlake.release.qualify import REPORT_FILE, write_report
from freshlake.release.signing import SIGNATURE_FILE, SignatureError, sign_model, verify_model
from freshlake.training.artifact import CARD_FILE, MODEL_FILE

KEY_ENV = "FRESHLAKE_TEST_SIGNING_KEY"


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    """A folder with the signed files' names (signing reads bytes, not models)."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    (tmp_path / MODEL_FILE).write_bytes(b"\x00weights" * 1000)
    (tmp_path / CARD_FILE).write_text(json.dumps({"data": {"table": "examples"}}))
    write_report(tmp_path, {"qualified": True, "failed": []})
    return tmp_path


def test_unkeyed_signature_verifies_until_any_signed_file_changes(model_dir):
    signature = sign_model(model_dir, KEY_ENV)
    assert not signature["keyed"] and signature["algorithm"] == "sha256"
    assert verify_model(model_dir, KEY_ENV)["digest"] == signature["digest"]

    for name in (MODEL_FILE, CARD_FILE, REPORT_FILE):
        original = (model_dir / name).read_bytes()
        (model_dir / name).write_bytes(original + b" ")
        with pytest.raises(SignatureError, match=f"{name} changed after signing"):
            verify_model(model_dir, KEY_ENV)
        (model_dir / name).write_bytes(original)
    verify_model(model_dir, KEY_ENV)


def test_a_forged_signature_file_does_not_verify(model_dir):
    sign_model(model_dir, KEY_ENV)
    (model_dir / MODEL_FILE).write_bytes(b"other weights")
    signature = json.loads((model_dir / SIGNATURE_FILE).read_text())
    signature["files"][MODEL_FILE] = "0" * 64  # the attacker edits the listing, not the digest
    (model_dir / SIGNATURE_FILE).write_text(json.dumps(signature))
    with pytest.raises(SignatureError):
        verify_model(model_dir, KEY_ENV)


def test_keyed_signature_needs_the_same_key(model_dir, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "secret-one")
    signature = sign_model(model_dir, KEY_ENV)
    assert signature["keyed"] and signature["algorithm"] == "hmac-sha256"
    assert "secret-one" not in (model_dir / SIGNATURE_FILE).read_text()
    verify_model(model_dir, KEY_ENV, require_keyed=True)

    monkeypatch.setenv(KEY_ENV, "secret-two")
    with pytest.raises(SignatureError, match="another key"):
        verify_model(model_dir, KEY_ENV)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(SignatureError, match="signed with a key"):
        verify_model(model_dir, KEY_ENV)


def test_unqualified_unsigned_and_unkeyed_models_are_refused(model_dir):
    with pytest.raises(SignatureError, match="not signed"):
        verify_model(model_dir, KEY_ENV)
    write_report(model_dir, {"qualified": False, "failed": ["calibration"]})
    with pytest.raises(SignatureError, match="did not pass qualification"):
        sign_model(model_dir, KEY_ENV)
    (model_dir / REPORT_FILE).unlink()
    with pytest.raises(SignatureError, match="never qualified"):
        sign_model(model_dir, KEY_ENV)
    write_report(model_dir, {"qualified": True, "failed": []})
    sign_model(model_dir, KEY_ENV)
    with pytest.raises(SignatureError, match="keyed one is required"):
        verify_model(model_dir, KEY_ENV, require_keyed=True)
