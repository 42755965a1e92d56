"""The CTR model: hashed embeddings (bags for n-grams), dense numeric inputs, an MLP, a logit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from freshlake.training.batch import Batch, FeatureLayout


class SmeLU(nn.Module):
    """Smooth ReLU (Shamir et al. 2020): 0 below -beta, (x+beta)^2/(4 beta) inside, x above beta."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        if beta <= 0:
            raise ValueError("SmeLU beta must be positive")
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quadratic = (x + self.beta) ** 2 / (4 * self.beta)
        return torch.where(x >= self.beta, x, torch.where(x <= -self.beta, 0.0, quadratic))


@dataclass(frozen=True)
class ModelShape:
    """Everything needed to rebuild the model from a saved artifact."""

    categorical_rows: list[int]
    text_rows: list[int]
    numeric: int
    embedding_dim: int = 16
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    activation: str = "relu"
    smelu_beta: float = 1.0

    @classmethod
    def from_layout(
        cls,
        layout: FeatureLayout,
        max_rows: int,
        embedding_dim: int,
        hidden: Sequence[int],
        activation: str,
        smelu_beta: float,
    ) -> ModelShape:
        def rows(column: str) -> int:
            return min(layout.buckets.get(column, max_rows), max_rows)

        return cls(
            categorical_rows=[rows(c) for c in layout.categorical],
            text_rows=[rows(c) for c in layout.text],
            numeric=len(layout.numeric),
            embedding_dim=embedding_dim,
            hidden=list(hidden),
            activation=activation,
            smelu_beta=smelu_beta,
        )

    def to_dict(self) -> dict:
        return asdict(self)


class CTRModel(nn.Module):
    """Predicts the logit of a click; `predict` gives probabilities."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        dim = shape.embedding_dim
        self.categorical = nn.ModuleList(nn.Embedding(n, dim) for n in shape.categorical_rows)
        self.text = nn.ModuleList(nn.EmbeddingBag(n, dim, mode="mean") for n in shape.text_rows)
        width = dim * (len(shape.categorical_rows) + len(shape.text_rows)) + shape.numeric
        layers: list[nn.Module] = []
        for size in shape.hidden:
            layers += [nn.Linear(width, size), self._activation()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        for table in [*self.categorical, *self.text]:
            nn.init.normal_(table.weight, std=0.01)

    def _activation(self) -> nn.Module:
        if self.shape.activation == "smelu":
            return SmeLU(self.shape.smelu_beta)
        if self.shape.activation == "relu":
            return nn.ReLU()
        raise ValueError(f"unknown activation {self.shape.activation!r}")

    def forward(self, batch: Batch) -> torch.Tensor:
        parts = [
            table(batch.categorical[:, i] % table.num_embeddings)
            for i, table in enumerate(self.categorical)
        ]
        parts += [
            bag(ids % bag.num_embeddings, offsets)
            for bag, ids, offsets in zip(self.text, batch.text_ids, batch.text_offsets, strict=True)
        ]
        # Signed log scale keeps counts, positions and hours in a range the MLP trains on.
        numeric = batch.numeric
        parts.append(torch.sign(numeric) * torch.log1p(numeric.abs()))
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)

    @torch.no_grad()
    def init_output_bias(self, logit: float) -> None:
        """Start the average output near `logit` (the base rate's log-odds): the output
        layer's bias set to it."""
        self.mlp[-1].bias.fill_(logit)

    @torch.no_grad()
    def shift_output_bias(self, delta: float) -> None:
        """Add `delta` to every logit (the output layer's bias)."""
        self.mlp[-1].bias.add_(delta)

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        return torch.sigmoid(self.forward(batch))


def weighted_log_loss(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor):
    """Sum over the batch of weight x binary log loss (divide by the total weight yourself)."""
    losses = nn.functional.binary_cross_entropy_with_logits(logits, label, reduction="none")
    return (losses * weight).sum()


def make_optimizer(name: str, params, learning_rate: float) -> torch.optim.Optimizer:
    """Adagrad (the CTR default), Adam or plain SGD."""
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=learning_rate)
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")
