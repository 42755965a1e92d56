"""Synthetic impression and action logs with known statistics (pure numpy/pyarrow, no Spark)."""

from freshlake.synth.generator import MANIFEST, generate_logs, plan_chunks

__all__ = ["MANIFEST", "generate_logs", "plan_chunks"]
