"""save_pretrained / from_pretrained through real local folders, strict in every way."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from u2net_hub import CheckpointMismatchError, ConfigError, U2Net


def _randomise(model: U2Net, seed: int = 0) -> U2Net:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model


def _custom_stages() -> dict:
    stages = U2Net(variant="tiny").config["stages"]
    for spec in stages.values():
        spec["mid_channels"] = 8
    stages["stage1"]["height"] = 5
    return stages


@pytest.mark.parametrize("kwargs", [{"variant": "tiny"}, {"variant": "full"}, {"variant": "custom", "stages": _custom_stages()}])
def test_round_trip_is_bit_exact(tmp_path, kwargs):
    model = _randomise(U2Net(**kwargs)).eval()  # eval: a training-mode forward would use batch statistics
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    loaded = U2Net.from_pretrained(tmp_path)
    assert loaded.config == model.config
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert list(original) == list(reloaded)
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    x = torch.randn(1, 3, 40, 56)
    assert torch.equal(model(x).logits, loaded(x).logits)


def test_config_json_describes_stages_and_preprocessing(tmp_path):
    U2Net(variant="tiny").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["variant"] == "tiny"
    assert config["block"] == "rsu"
    assert config["stages"]["stage5"] == {"height": 4, "in_channels": 64, "mid_channels": 16, "out_channels": 64,
                                          "dilated": True, "block": "rsu"}
    assert config["input_size"] == 320
    assert config["mean"] == [0.485, 0.456, 0.406] and config["std"] == [0.229, 0.224, 0.225]
    assert config["divide_by_max"] is True


def test_model_card_is_rendered_from_the_template(tmp_path):
    U2Net(variant="tiny").save_pretrained(tmp_path, model_card_kwargs={"metrics": {"maxF": 0.9123}, "training": {"dataset": "synthetic", "steps": 10}})
    card = (tmp_path / "README.md").read_text()
    assert "pipeline_tag: image-segmentation" in card and "library_name: u2net-hub" in card
    assert "1,131,181" in card and "`tiny`" in card
    assert "0.9123" in card and "synthetic" in card
    assert "@article{qin2020u2net" in card


def test_weights_of_the_other_variant_are_named_in_the_error(tmp_path):
    U2Net(variant="tiny").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    full = U2Net(variant="full").config
    config.update(variant="full", stages=full["stages"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="'tiny' variant.*builds the 'full'"):
        U2Net.from_pretrained(tmp_path)


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_missing_or_extra_keys_are_listed(tmp_path, change):
    U2Net(variant="tiny").save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    if change == "missing":
        del weights["side3.weight"]
    else:
        weights["side7.weight"] = torch.zeros(1)
    save_file(weights, tmp_path / "model.safetensors")
    expected = "missing keys: side3.weight" if change == "missing" else "unexpected keys: side7.weight"
    with pytest.raises(CheckpointMismatchError, match=expected):
        U2Net.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"variant": "huge"}', "unknown variant"),
        ('{"variant": "tiny", "colour": 3}', "unknown keys \\['colour'\\]"),
        ('[1, 2]', "JSON object"),
    ],
)
def test_malformed_config_json_is_one_clear_error(tmp_path, text, message):
    U2Net(variant="tiny").save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=message):
        U2Net.from_pretrained(tmp_path)


def test_folder_without_weights_or_config_is_reported(tmp_path):
    U2Net(variant="tiny").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        U2Net.from_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ConfigError, match="no config.json"):
        U2Net.from_pretrained(tmp_path)
