"""deep_supervision_loss: the paper's sum of seven BCE terms, computed safely from logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from u2net_hub import U2Net, U2NetOutput
from u2net_hub.losses import deep_supervision_loss, side_losses


def _output(seed: int = 0, shape=(2, 1, 8, 8), dtype=torch.float32) -> U2NetOutput:
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(shape, generator=g).mul(3).to(dtype) for _ in range(7)]
    return U2NetOutput(logits=maps[0], side_logits=tuple(maps[1:]))


def test_equals_the_original_sum_of_bce_on_sigmoids():
    output = _output()
    labels = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    # The original: nn.BCELoss (mean) on each sigmoid map, summed with weight 1.
    expected = sum(F.binary_cross_entropy(torch.sigmoid(m), labels) for m in output.all_logits)
    assert torch.allclose(deep_supervision_loss(output, labels), expected, atol=1e-5)
    assert len(side_losses(output, labels)) == 7


def test_soft_labels_and_3d_labels_are_accepted():
    output = _output()
    soft = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = sum(F.binary_cross_entropy(torch.sigmoid(m), soft.unsqueeze(1)) for m in output.all_logits)
    assert torch.allclose(deep_supervision_loss(output, soft), expected, atol=1e-5)


def test_finite_where_sigmoid_saturates():
    # Logits of +-200 make sigmoid exactly 0/1 in float32; BCE on sigmoids would clamp at 100 per pixel.
    maps = [torch.full((1, 1, 4, 4), 200.0)] * 7
    output = U2NetOutput(logits=maps[0], side_logits=tuple(maps[1:]))
    loss = deep_supervision_loss(output, torch.zeros(1, 1, 4, 4))
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(7 * 200.0, rel=1e-4)


def test_bf16_logits_give_a_float32_loss_close_to_fp32():
    output32 = _output(seed=3)
    output16 = U2NetOutput(
        logits=output32.logits.bfloat16(), side_logits=tuple(s.bfloat16() for s in output32.side_logits)
    )
    labels = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16 = deep_supervision_loss(output16, labels)
    assert loss16.dtype == torch.float32
    assert loss16.item() == pytest.approx(deep_supervision_loss(output32, labels).item(), rel=2e-2)


def test_weights_and_shape_errors():
    output = _output()
    labels = torch.zeros(2, 1, 8, 8)
    terms = side_losses(output, labels)
    weights = [2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5]
    weighted = deep_supervision_loss(output, labels, weights)
    assert weighted.item() == pytest.approx((2 * terms[0] + terms[1] + 0.5 * terms[6]).item(), rel=1e-6)
    with pytest.raises(ValueError, match="7 weights"):
        deep_supervision_loss(output, labels, [1.0])
    with pytest.raises(ValueError, match="do not match"):
        deep_supervision_loss(output, torch.zeros(2, 1, 4, 4))


def test_gradients_reach_every_side_head():
    model = U2Net(variant="tiny").train()
    x = torch.randn(2, 3, 32, 32)
    labels = (torch.rand(2, 1, 32, 32) > 0.5).float()
    deep_supervision_loss(model(x), labels).backward()
    for index in range(1, 7):
        grad = getattr(model, f"side{index}").weight.grad
        assert grad is not None and grad.abs().sum() > 0, f"side{index} got no gradient"
    assert model.outconv.weight.grad.abs().sum() > 0
