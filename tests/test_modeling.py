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
