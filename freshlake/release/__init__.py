"""The release path: qualify a model, sign it, register it, promote or roll it back, canary it.

- `qualify.py`: metrics on a qualification set the model never trained on, per slice, against
  the thresholds of the `release` config section and the current champion; the report is
  written beside the model (`qualification.json`).
- `signing.py`: a digest over the weights, the model card and the qualification report
  (HMAC-SHA256 with a key from the environment, else plain SHA-256), `signature.json`.
- `registry.py`: MLflow runs, model versions with lineage tags, the `champion` and `challenger`
  aliases; promote and roll back, each recorded with its reason.
- `events.py`: the `release_events` table, one row per registration, promotion and rollback.
- `canary.py`: the challenger scored beside the champion on the newest matured fresh examples;
  rolled back with an alert in `monitor_alerts` when its log loss is worse by a margin.
"""
