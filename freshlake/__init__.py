"""freshlake: fresh, statistically correct training data for CTR and recommendation models."""

__version__ = "0.1.0"
