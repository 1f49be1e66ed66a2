"""The blocks of the paper's comparison as stage-table data: build, shapes, Hub round trip, fast path."""

from __future__ import annotations

import json

import pytest
import torch

from u2net_hub import BLOCKS, ConfigError, U2Net
from u2net_hub.acceleration import optimized_for_inference
from u2net_hub.configs import BLOCK_NAMES
from u2net_hub.layers import DenseBlock, PlainBlock, PyramidPoolingBlock, ResidualBlock


def _conv_bn(cin: int, cout: int, k: int = 3) -> int:
    """Parameters of conv (with bias) + BatchNorm, counted by hand."""
    return cin * cout * k * k + cout + 2 * cout


def test_every_block_is_registered_under_the_configs_names():
    assert tuple(BLOCKS) == BLOCK_NAMES == ("rsu", "plain", "residual", "dense", "inception", "ppm")


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_each_block_gives_the_seven_maps_at_any_size_and_trains(block):
    torch.manual_seed(0)
    model = U2Net(variant="tiny", block=block).eval()
    assert model.block == block and model.variant == "tiny"
    assert {spec.block for spec in model.stages.values()} == {block}
    for size in ((37, 53), (16, 16)):
        with torch.no_grad():
            maps = model(torch.randn(1, 3, *size)).probabilities()
        assert len(maps) == 7
        for m in maps:
            assert m.shape == (1, 1, *size)
            assert torch.isfinite(m).all() and (m >= 0).all() and (m <= 1).all()
    model.train()
    out = model(torch.randn(2, 3, 33, 29))
    sum(o.mean() for o in out.all_logits).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_save_and_load_round_trip_is_bit_exact(block, tmp_path):
    torch.manual_seed(1)
    model = U2Net(variant="tiny", block=block).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["block"] == block
    assert {row["block"] for row in config["stages"].values()} == {block}
    loaded = U2Net.from_pretrained(tmp_path)
    assert loaded.block == block and not loaded.training
    mine, theirs = model.state_dict(), loaded.state_dict()
    assert list(mine) == list(theirs)
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    x = torch.randn(1, 3, 25, 31)
    with torch.no_grad():
        for a, b in zip(model(x).all_logits, loaded(x).all_logits):
            assert torch.equal(a, b)


def test_a_custom_table_mixes_blocks_per_stage_and_round_trips(tmp_path):
    stages = U2Net(variant="tiny").config["stages"]
    stages["stage1"]["block"] = "plain"
    stages["stage5"]["block"] = "ppm"  # a dilated stage: the pyramid's dilated form
    del stages["stage2d"]["block"]  # a row without a block is RSU
    model = U2Net(variant="tiny", stages=stages).eval()
    assert model.block == "mixed" and model.variant == "tiny"
    assert isinstance(model.stage1, PlainBlock) and isinstance(model.stage5, PyramidPoolingBlock)
    assert model.stage5.dilated and type(model.stage2d).__name__ == "RSU"
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["block"] == "mixed"
    loaded = U2Net.from_pretrained(tmp_path)
    assert {n: s.block for n, s in loaded.stages.items()} == {n: s.block for n, s in model.stages.items()}
    x = torch.randn(1, 3, 23, 27)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


def test_the_default_rsu_model_is_unchanged(original_shapes):
    for variant, count in (("tiny", 1_131_181), ("full", 44_009_869)):
        with torch.device("meta"):
            model = U2Net(variant=variant, block="rsu")
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert len(shapes) == 798 and model.num_parameters == count
        expected = original_shapes[variant]
        assert shapes == expected["state_dict"] and expected["parameters"] == count


def test_block_names_are_checked():
    with pytest.raises(ConfigError, match="unknown block 'unet'"):
        U2Net(variant="tiny", block="unet")
    stages = U2Net(variant="tiny").config["stages"]
    with pytest.raises(ConfigError, match="names block 'plain'"):
        U2Net(variant="tiny", stages=stages, block="plain")  # the rows say rsu
    stages["stage3"]["block"] = "lstm"
    with pytest.raises(ConfigError, match="stage3"):
        U2Net(variant="tiny", stages=stages)
    with pytest.raises(ConfigError, match="mixed"):
        U2Net(variant="tiny", block="mixed")


def test_block_weights_do_not_load_into_another_block(tmp_path):
    U2Net(variant="tiny", block="rsu").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(block="plain", stages={n: dict(s, block="plain") for n, s in config["stages"].items()})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="RSU weights of the 'tiny' variant but the configuration builds 'plain'"):
        U2Net.from_pretrained(tmp_path)


def test_parameter_counts_follow_the_documented_construction():
    """Counted by hand from the docstrings: in=13, mid=5, out=7, height=4."""
    cin, mid, out, height = 13, 5, 7, 4

    def count(module):
        return sum(p.numel() for p in module.parameters())

    assert count(PlainBlock(height=height, in_channels=cin, mid_channels=mid, out_channels=out)) == (
        _conv_bn(cin, out) + _conv_bn(out, out))
    assert count(ResidualBlock(height=height, in_channels=cin, mid_channels=mid, out_channels=out)) == (
        _conv_bn(cin, out) + _conv_bn(out, mid) + _conv_bn(mid, out))
    dense = _conv_bn(cin, out) + sum(_conv_bn(out + i * mid, mid) for i in range(height)) + _conv_bn(
        out + height * mid, out, k=1)
    assert count(DenseBlock(height=height, in_channels=cin, mid_channels=mid, out_channels=out)) == dense
    pyramid = _conv_bn(cin, out) + (height - 1) * _conv_bn(out, mid) + _conv_bn(out + (height - 1) * mid, out)
    for dilated in (False, True):
        block = PyramidPoolingBlock(height=height, in_channels=cin, mid_channels=mid, out_channels=out, dilated=dilated)
        assert count(block) == pyramid
    # the dilated pyramid never pools: level k is a 3x3 conv with dilation 2^k
    dilated = PyramidPoolingBlock(height=height, in_channels=cin, mid_channels=mid, out_channels=out, dilated=True)
    assert [dilated.get_submodule(f"level{k}").conv_s1.dilation for k in (1, 2, 3)] == [(2, 2), (4, 4), (8, 8)]


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_the_fast_path_folds_every_block(block):
    """Every convolution of every block is a ConvBNReLU, so the fast copy (folded, fused) computes the same maps."""
    torch.manual_seed(0)
    model = U2Net(variant="tiny", block=block)
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(2):
            model(torch.randn(2, 3, 32, 32))
    model.eval()
    x = torch.randn(1, 3, 29, 35)
    fast = optimized_for_inference(model, dtype=torch.float32)
    with torch.no_grad():
        expected = torch.sigmoid(model(x).logits)
        got = torch.sigmoid(fast(x).logits.float())
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=0)
