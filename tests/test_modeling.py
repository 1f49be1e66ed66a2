"""The network against the original implementation: keys, shapes, parameter counts, outputs."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from u2net_hub import RSU, ConfigError, U2Net


@pytest.mark.parametrize("variant", ["full", "tiny"])
def test_state_dict_matches_original_keys_shapes_and_order(variant, original_shapes):
    model = U2Net(variant=variant)
    expected = original_shapes[variant]
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 798
    assert list(shapes) == list(expected["state_dict"])
    assert shapes == expected["state_dict"]
    assert model.num_parameters == expected["parameters"]


def test_a_new_model_trains_and_a_loaded_one_evaluates(tmp_path):
    """Like every PyTorch module, U2Net() starts in training mode; from_pretrained returns eval mode."""
    model = U2Net(variant="tiny")
    assert model.training is True
    assert all(m.training for m in model.modules())
    model.save_pretrained(tmp_path)
    loaded = U2Net.from_pretrained(tmp_path)
    assert loaded.training is False and not any(m.training for m in loaded.modules())


def test_conformance_vectors_of_the_original_implementation(reference_dir):
    model = U2Net(variant="tiny")
    model.load_state_dict(load_file(reference_dir / "tiny_random_weights.safetensors"), strict=True)
    model.eval()
    vectors = load_file(reference_dir / "tiny_conformance_vectors.safetensors")
    for i in range(2):
        x = vectors[f"input_{i}"]
        with torch.no_grad():
            outputs = model(x).probabilities()
        assert len(outputs) == 7
        for j, output in enumerate(outputs):
            reference = vectors[f"output_{i}_{j}"]
            assert output.shape == reference.shape == (1, 1, *x.shape[-2:])
            assert (output - reference).abs().max().item() <= 1e-5, (i, j)


def test_odd_sizes_give_outputs_at_input_size():
    model = U2Net(variant="tiny")
    out = model(torch.randn(2, 3, 37, 53))
    assert out.logits.shape == (2, 1, 37, 53)
    assert len(out.side_logits) == 6
    assert all(s.shape == (2, 1, 37, 53) for s in out.side_logits)


def test_rsu_dilated_block_keeps_resolution_and_uses_growing_dilation():
    block = RSU(4, 8, 4, 8, dilated=True)
    assert [block.get_submodule(f"rebnconv{i}").conv_s1.dilation[0] for i in range(1, 5)] == [1, 2, 4, 8]
    assert [block.get_submodule(f"rebnconv{i}d").conv_s1.dilation[0] for i in (3, 2, 1)] == [4, 2, 1]
    assert block(torch.randn(1, 8, 9, 11)).shape == (1, 8, 9, 11)


@pytest.mark.parametrize(
    "bad_input, error",
    [
        (torch.randn(3, 64, 64), ValueError),
        (torch.randn(1, 4, 64, 64), ValueError),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError),
        ([[0.0]], TypeError),
        (torch.randn(0, 3, 64, 64), ValueError),
    ],
)
def test_forward_rejects_bad_tensors_with_a_clear_message(bad_input, error):
    model = U2Net(variant="tiny")
    with pytest.raises(error, match=r"expected|takes|empty"):
        model(bad_input)


def test_unknown_variant_and_miswired_table_are_config_errors():
    with pytest.raises(ConfigError, match="unknown variant"):
        U2Net(variant="huge")
    stages = U2Net(variant="tiny").config["stages"]
    stages["stage2"]["in_channels"] = 32
    with pytest.raises(ConfigError, match="stage2"):
        U2Net(stages=stages, variant="custom")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_training_gradients_equal_plain_autograd(dtype):
    """The decoder's upsample has its own backward in channels_last training; it must give autograd's gradients."""
    from u2net_hub.layers import _DenseGradResize, resize_to

    torch.manual_seed(0)
    low = torch.randn(2, 6, 9, 7, dtype=dtype).contiguous(memory_format=torch.channels_last)
    skip = torch.randn(2, 6, 17, 13, dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(12, 2, 17, 13, dtype=dtype)  # makes every channel and pixel of the gradient different
    grads = []
    for resize in (resize_to, lambda x, ref: torch.nn.functional.interpolate(x, size=ref.shape[-2:], mode="bilinear")):
        x = low.detach().requires_grad_(True)
        out = torch.cat((resize(x, skip), skip), dim=1)  # the gradient reaching the resize is a channel slice
        (out * weight.permute(1, 0, 2, 3)).sum().backward()
        grads.append(x.grad)
    assert grads[0].grad_fn is None and grads[0].shape == low.shape
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    # and the custom path was really taken (not the plain one it is compared with)
    y = resize_to(low.detach().requires_grad_(True), skip)
    assert type(y.grad_fn).__name__ == _DenseGradResize.__name__ + "Backward"


def test_whole_model_channels_last_gradients_equal_plain_interpolate(monkeypatch):
    """A whole tiny U²-Net in channels_last: every parameter's gradient is the one plain autograd gives."""
    from u2net_hub import layers

    torch.manual_seed(0)
    model = U2Net(variant="tiny").train().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 40, 56).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(2, 1, 40, 56) > 0.5).float()

    def gradients():
        model.zero_grad(set_to_none=True)
        out = model(x)
        sum(torch.nn.functional.binary_cross_entropy_with_logits(o, y) for o in out.all_logits).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    ours = gradients()
    monkeypatch.setattr(layers._DenseGradResize, "apply", lambda t, size: torch.nn.functional.interpolate(
        t, size=size, mode="bilinear", align_corners=False))
    plain = gradients()
    for name, expected in plain.items():
        torch.testing.assert_close(ours[name], expected, rtol=0, atol=0, msg=name)
