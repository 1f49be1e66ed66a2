"""Released-style .pth files -> save_pretrained folders, checked against the original implementation's outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from u2net_hub import U2Net
from u2net_hub.convert import ConversionError, convert_checkpoint

COUNTERS = "num_batches_tracked"


@pytest.fixture(scope="module")
def original_tiny(reference_dir) -> dict[str, torch.Tensor]:
    """The tiny reference weights in the original key layout."""
    return load_file(reference_dir / "tiny_random_weights.safetensors")


@pytest.fixture(scope="module")
def vectors(reference_dir) -> dict[str, torch.Tensor]:
    return load_file(reference_dir / "tiny_conformance_vectors.safetensors")


def _assert_matches_original(folder: Path, vectors) -> None:
    """The converted folder reproduces the original implementation's seven maps on both reference inputs."""
    model = U2Net.from_pretrained(folder)
    for i in range(2):
        with torch.no_grad():
            maps = model(vectors[f"input_{i}"]).probabilities()
        for j, got in enumerate(maps):
            torch.testing.assert_close(got, vectors[f"output_{i}_{j}"], atol=2e-5, rtol=0)


def _without_counters(state_dict):
    return {k: v for k, v in state_dict.items() if not k.endswith(COUNTERS)}


LAYOUTS = {
    "plain": lambda sd: sd,
    "pytorch-0.4 (no counters, legacy format)": _without_counters,
    "DataParallel": lambda sd: {f"module.{k}": v for k, v in _without_counters(sd).items()},
    "wrapped state_dict": lambda sd: {"state_dict": sd, "epoch": 12, "optimizer_lr": 0.001},
    "wrapped model": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_released_layouts_convert_and_match_the_original(tmp_path, original_tiny, vectors, layout):
    source = tmp_path / "u2netp.pth"
    torch.save(LAYOUTS[layout](original_tiny), source, _use_new_zipfile_serialization="legacy" not in layout)
    result = convert_checkpoint(source, tmp_path / "out")
    assert result.variant == "tiny" and result.num_parameters == 1_131_181
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"config.json", "model.safetensors", "README.md",
                                                             "training_record.json"}  # the card's notes
    expected_filled = 0 if layout in ("plain", "wrapped state_dict", "wrapped model") else 112
    assert result.filled_num_batches_tracked == expected_filled
    assert result.stripped_prefix == ("module." if layout in ("DataParallel", "wrapped model") else None)
    assert result.wrapper_key == {"wrapped state_dict": "state_dict", "wrapped model": "model"}.get(layout)
    assert result.max_abs_difference == 0.0
    if layout == "DataParallel":  # the weights are bit-identical in every layout (below); one numeric check suffices
        _assert_matches_original(tmp_path / "out", vectors)
    saved = load_file(tmp_path / "out" / "model.safetensors")
    for key, value in original_tiny.items():
        if not key.endswith(COUNTERS):
            assert torch.equal(saved[key], value), key


def test_full_variant_is_detected(tmp_path):
    from u2net_hub.modeling import variant_shapes

    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in variant_shapes("full").items():
        if key.endswith(COUNTERS):
            continue  # PyTorch 0.4 checkpoints have none
        values = torch.rand(shape, generator=generator) + 0.5 if key.endswith("running_var") else torch.randn(shape, generator=generator) * 0.05
        state[f"module.{key}"] = values
    torch.save(state, tmp_path / "u2net.pth")
    result = convert_checkpoint(tmp_path / "u2net.pth", tmp_path / "full")
    assert result.variant == "full" and result.num_parameters == 44_009_869
    assert result.filled_num_batches_tracked == 112 and result.max_abs_difference == 0.0
    saved = load_file(tmp_path / "full" / "model.safetensors")
    assert len(saved) == 798
    for key, value in state.items():
        assert torch.equal(saved[key.removeprefix("module.")], value), key


def _touch(path: str) -> str:
    Path(path).write_text("code ran")
    return path


class Payload:
    """Unpickling this would call _touch: exactly what weights_only loading must refuse to do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def test_a_pickle_that_runs_code_is_refused(tmp_path, original_tiny):
    marker = tmp_path / "marker.txt"
    source = tmp_path / "evil.pth"
    torch.save({"state_dict": original_tiny, "extra": Payload(marker)}, source)
    with pytest.raises(ConversionError, match=r"evil\.pth: refused.*run code.*_touch"):
        convert_checkpoint(source, tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content,match",
    [
        ("text", "not a PyTorch checkpoint"),
        ({"epoch": 3, "lr": 0.1}, r"a dict with keys \['epoch', 'lr'\]"),
        ({"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}, "not a U²-Net checkpoint"),
        ([torch.zeros(2)], "holds a list"),
    ],
    ids=["not-a-checkpoint", "no-tensors", "other-network", "a-list"],
)
def test_things_that_are_not_u2net_checkpoints(tmp_path, content, match):
    source = tmp_path / "thing.pth"
    if content == "text":
        source.write_text("hello, I am not a checkpoint")
    else:
        torch.save(content, source)
    with pytest.raises(ConversionError, match=match):
        convert_checkpoint(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_broken_weights_are_named(tmp_path, original_tiny):
    damaged = dict(original_tiny)
    damaged["stage1.rebnconvin.conv_s1.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(damaged, tmp_path / "damaged.pth")
    with pytest.raises(ConversionError, match=r"stage1\.rebnconvin\.conv_s1\.weight"):
        convert_checkpoint(tmp_path / "damaged.pth", tmp_path / "out")


def test_variant_mismatch_missing_file_and_existing_output(tmp_path, original_tiny):
    source = tmp_path / "u2netp.pth"
    torch.save(original_tiny, source)
    with pytest.raises(ConversionError, match=r"holds 'tiny' weights .* but --variant full"):
        convert_checkpoint(source, tmp_path / "out", variant="full")
    with pytest.raises(ConversionError, match="no such file"):
        convert_checkpoint(tmp_path / "missing.pth", tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="not empty"):
        convert_checkpoint(source, busy)
    result = convert_checkpoint(source, busy, variant="u2netp", overwrite=True)
    assert result.variant == "tiny" and (busy / "keep.txt").read_text() == "mine"


def test_portrait_checkpoints_get_512_input_and_a_note(tmp_path, original_tiny):
    torch.save(original_tiny, tmp_path / "u2net_portrait.pth")
    result = convert_checkpoint(tmp_path / "u2net_portrait.pth", tmp_path / "portrait")
    assert result.portrait
    assert json.loads((tmp_path / "portrait" / "config.json").read_text())["input_size"] == 512
    card = (tmp_path / "portrait" / "README.md").read_text()
    assert "1 - fused" in card and "512x512" in card and "u2net_portrait.pth" in card


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "u2net_hub.cli", "convert", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_convert_and_offline_push(tmp_path, original_tiny, vectors):
    source = tmp_path / "u2netp.pth"
    torch.save({f"module.{k}": v for k, v in _without_counters(original_tiny).items()}, source)
    done = _cli(str(source), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "'tiny' variant" in done.stdout and "filled 112" in done.stdout and "module." in done.stdout
    _assert_matches_original(tmp_path / "out", vectors)

    pushed = _cli(str(source), str(tmp_path / "pushed"), "--push-to-hub", "someone/u2netp")
    assert pushed.returncode == 1
    assert "offline" in pushed.stderr and "someone/u2netp" in pushed.stderr
    assert (tmp_path / "pushed" / "model.safetensors").is_file()  # saved before the push was refused

    marker = tmp_path / "marker.txt"
    torch.save({"state_dict": original_tiny, "x": Payload(marker)}, tmp_path / "evil.pth")
    refused = _cli(str(tmp_path / "evil.pth"), str(tmp_path / "evil"))
    assert refused.returncode == 2 and "evil.pth" in refused.stderr and "refused" in refused.stderr
    assert not marker.exists()
