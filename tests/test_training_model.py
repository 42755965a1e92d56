"""The CTR model, SmeLU, the weighted metrics, bias correction and prediction difference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from freshlake.training.batch import FeatureLayout, empty_batch
from freshlake.training.metrics import (
    calibration,
    correct_for_negative_sampling,
    normalized_entropy,
    prediction_difference,
    weighted_auc,
    weighted_log_loss,
)
from freshlake.training.model import CTRModel, ModelShape, SmeLU
from freshlake.training.synthetic import SYNTHETIC_SPEC, synthetic_examples

LAYOUT = FeatureLayout.from_spec(SYNTHETIC_SPEC)


def test_smelu_is_relu_outside_the_band_and_smooth_inside():
    act = SmeLU(beta=0.5)
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = act(x)
    assert y.tolist() == pytest.approx([0.0, 0.0, 0.125, 0.5, 2.0])
    y.sum().backward()
    # gradient (x + beta) / (2 beta) inside: continuous at both ends, unlike ReLU's step
    assert x.grad.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_smelu_gradient_matches_finite_differences_and_is_continuous():
    act = SmeLU(beta=0.7)
    # away from the kinks at +-beta, where one-sided differences disagree by design of ReLU only
    x = torch.tensor([-1.5, -0.69, -0.3, 0.0, 0.4, 0.69, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(act, (x.clone().requires_grad_(),))
    # the gradient is continuous across both band edges (ReLU's jumps from 0 to 1 at 0)
    for edge, expected in ((-0.7, 0.0), (0.7, 1.0)):
        near = torch.tensor([edge - 1e-6, edge + 1e-6], dtype=torch.float64, requires_grad=True)
        act(near).sum().backward()
        assert near.grad.tolist() == pytest.approx([expected, expected], abs=1e-5)


def brute_force_auc(label, pred, weight):
    num = den = 0.0
    for i, j in itertools.product(range(len(label)), repeat=2):
        if label[i] == 1 and label[j] == 0:
            pair = weight[i] * weight[j]
            den += pair
            num += pair * (1.0 if pred[i] > pred[j] else 0.5 if pred[i] == pred[j] else 0.0)
    return num / den


def test_weighted_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 60)
    pred = rng.integers(0, 8, 60) / 8  # many ties
    weight = rng.choice([1.0, 10.0], 60)
    assert weighted_auc(label, pred, weight) == pytest.approx(brute_force_auc(label, pred, weight))
    assert weighted_auc([0, 1], [0.2, 0.9]) == 1.0


def test_log_loss_normalized_entropy_and_calibration():
    label = np.array([1, 0, 0, 0])
    weight = np.array([1.0, 10.0, 10.0, 10.0])
    base = 1 / 31  # weighted CTR
    constant = np.full(4, base)
    assert normalized_entropy(label, constant, weight) == pytest.approx(1.0)
    assert calibration(label, constant, weight) == pytest.approx(1.0)
    assert calibration(label, constant * 2, weight) == pytest.approx(2.0)
    expected = -(math.log(0.5) + 30 * math.log(0.5)) / 31
    assert weighted_log_loss(label, np.full(4, 0.5), weight) == pytest.approx(expected)


def test_negative_sampling_correction_restores_the_true_rate():
    # Keeping negatives at rate r multiplies the odds by 1/r; the correction undoes it.
    true_p = np.array([0.01, 0.05, 0.3])
    r = 0.1
    odds = true_p / (1 - true_p) / r
    sampled_p = odds / (1 + odds)
    assert correct_for_negative_sampling(sampled_p, r) == pytest.approx(true_p)
    with pytest.raises(ValueError):
        correct_for_negative_sampling(sampled_p, 0)


def test_prediction_difference_definitions():
    a, b = np.array([0.1, 0.2]), np.array([0.1, 0.4])
    pd = prediction_difference(a, b)
    assert pd["pd_absolute"] == pytest.approx(0.1)
    assert pd["pd_relative"] == pytest.approx((0 + 0.2 / 0.3) / 2)
    assert pd["pd_normalized"] == pytest.approx(0.1 / 0.2)
    assert prediction_difference(a, a)["pd_relative"] == 0


def model(activation: str = "relu") -> CTRModel:
    shape = ModelShape.from_layout(LAYOUT, 512, 8, [16, 8], activation, 1.0)
    return CTRModel(shape)


def test_hashed_ids_are_folded_into_the_embedding_rows():
    shape = ModelShape.from_layout(LAYOUT, 512, 8, [16], "relu", 1.0)
    assert shape.categorical_rows == [512, 512, 11] and shape.text_rows == [512]


@pytest.mark.parametrize("activation", ["relu", "smelu"])
def test_model_predicts_probabilities_and_an_empty_batch_gives_zero_gradients(activation):
    from freshlake.training.batch import to_batch

    torch.manual_seed(0)
    net = model(activation)
    batch = to_batch(synthetic_examples(3000, seed=1).slice(0, 50), LAYOUT)
    p = net.predict(batch)
    assert p.shape == (50,) and bool(((p > 0) & (p < 1)).all())

    logits = net(empty_batch(LAYOUT))
    loss = (logits * 0).sum()
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and float(g.abs().sum()) == 0 for g in grads)
