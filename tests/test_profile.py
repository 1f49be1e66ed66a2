"""`u2net profile` and u2net_hub.profile: exact parameters, FLOPs against torch.utils.flop_counter, the block figure."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from u2net_hub import U2Net
from u2net_hub.cli import main as cli_main
from u2net_hub.configs import BLOCK_NAMES, STAGE_NAMES
from u2net_hub.layers import PlainBlock
from u2net_hub.profile import count_activation_bytes, profile_model


def _reference_flops(model, x) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_parameters_are_exact_and_flops_match_torch_flop_counter(block):
    torch.manual_seed(0)
    model = U2Net(variant="tiny", block=block).eval()
    profile = profile_model(model, (45, 61), timing=False)
    assert profile["total"]["params"] == sum(p.numel() for p in model.parameters())
    assert sum(row["params"] for row in profile["stages"].values()) == profile["total"]["params"]
    assert list(profile["stages"]) == [*STAGE_NAMES, "heads"]
    assert all(profile["stages"][name]["block"] == block for name in STAGE_NAMES)
    reference = _reference_flops(model, torch.randn(1, 3, 45, 61)) / 1e9
    assert profile["total"]["gflops"] == pytest.approx(reference, rel=0.02)
    assert sum(row["gflops"] for row in profile["stages"].values()) == pytest.approx(profile["total"]["gflops"])


def test_the_published_flops_of_the_tiny_model_at_320():
    """REFERENCE: 39.5 GFLOPs per 320x320 image for the tiny U²-Net (multiply-add = 2)."""
    profile = profile_model(U2Net(variant="tiny"), 320, timing=False)
    assert round(profile["total"]["gflops"], 1) == 39.5
    assert profile["total"]["params"] == 1_131_181


def test_activation_bytes_count_each_new_tensor_once():
    """A plain block on 8x8: conv, BN, conv, BN outputs of 64 channels (the in-place ReLUs add nothing)."""
    block = PlainBlock(height=2, in_channels=3, mid_channels=8, out_channels=64).eval()
    counted = count_activation_bytes(block, torch.randn(1, 3, 8, 8))
    assert sum(counted.values()) == 4 * 64 * 8 * 8 * 4


def test_profile_command_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "profile.json"
    code = cli_main(["profile", "--variant", "tiny", "--block", "dense", "--size", "48", "--repeats", "1",
                     "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "stage1d" in printed and "dense" in printed and "total" in printed
    document = json.loads(out.read_text())
    total = document["total"]
    assert set(total) >= {"params", "gflops", "activations_mb", "ms", "ms_per_image"}
    assert total["params"] == U2Net(variant="tiny", block="dense").num_parameters
    assert total["ms_per_image"] > 0 and total["gflops"] > 0 and total["activations_mb"] > 0
    assert set(document["stages"]) == {*STAGE_NAMES, "heads"}
    for row in document["stages"].values():
        assert set(row) >= {"params", "gflops", "activations_mb", "ms"}
    assert document["input"] == [1, 3, 48, 48] and document["model"]["block"] == "dense"


def test_profile_command_reads_a_saved_model(tmp_path, capsys):
    U2Net(variant="tiny", block="residual").save_pretrained(tmp_path / "model")
    assert cli_main(["profile", "--model", str(tmp_path / "model"), "--size", "32", "--repeats", "0"]) == 0
    printed = capsys.readouterr().out
    assert "block residual" in printed and f"{U2Net(variant='tiny', block='residual').num_parameters:,}" in printed


def test_blocks_figure_writes_the_table_json_and_png(tmp_path, capsys):
    png, out = tmp_path / "blocks.png", tmp_path / "blocks.json"
    assert cli_main(["profile", "--blocks", "--size", "32", "--repeats", "0", "--png", str(png),
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("RSU", "PLN", "RES", "DSE", "INC", "PPM"):
        assert name in printed
    rows = json.loads(out.read_text())["blocks"]
    assert [r["block"] for r in rows] == list(BLOCK_NAMES)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 300
    # each block alone keeps 3 -> 64 channels at the input's size: the RSU-7 of U²-Net's first stage
    rsu = next(r for r in rows if r["block"] == "rsu")
    assert rsu["params"] == sum(p.numel() for p in U2Net(variant="full").stage1.parameters())


@pytest.mark.parametrize("argv, message", [
    (["--model", "somewhere", "--block", "plain"], "drop --variant/--block"),
    (["--png", "x.png"], "--png goes with --blocks"),
    (["--blocks", "--variant", "tiny"], "--blocks profiles every block alone"),
    (["--model", "./no/such/folder"], "no such folder"),
])
def test_profile_usage_errors_exit_2(argv, message, capsys):
    assert cli_main(["profile", *argv]) == 2
    assert message in capsys.readouterr().err
