"""Presets, typed overrides and the resolved-config round trip."""

import dataclasses

import pytest
import yaml

from mambaad_cli.config import (
    Config,
    ConfigError,
    config_from_dict,
    load_preset,
    parse_override,
    preset_names,
)

PAPER_PRESETS = ["mvtec", "visa", "realiad", "uni_medical", "coco_ad", "mvtec3d"]


def test_all_presets_ship_and_load():
    names = preset_names()
    for name in [*PAPER_PRESETS, "demo", "folder"]:
        assert name in names
        cfg = load_preset(name)
        assert cfg.preset == name


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_carry_the_paper_recipe(name):
    cfg = load_preset(name)
    assert cfg.data.dataset == name
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.weight_decay) == (16, 5e-3, 1e-4)
    assert (cfg.train.grad_clip, cfg.train.loss_weight, cfg.train.seed) == (5.0, 5.0, 42)
    assert (cfg.train.lr_decay_at, cfg.train.lr_decay, cfg.train.epochs) == (0.8, 0.1, 1000)
    assert cfg.model.encoder.name == "resnet34.bt_in1k" and cfg.model.encoder.out_indices == [1, 2, 3]
    assert cfg.model.decoder.depths == [3, 4, 6, 3] and cfg.model.decoder.d_state == 16
    assert (cfg.model.decoder.scan, cfg.model.decoder.directions) == ("hilbert", 8)
    assert cfg.data.image_size == 256 and cfg.eval.sigma == 4.0


def test_per_dataset_settings():
    assert load_preset("realiad").data.views == []
    assert load_preset("coco_ad").data.coco_split == -1
    assert load_preset("visa").data.meta == "meta.json"
    demo = load_preset("demo")
    assert demo.model.encoder.weights == "bundled" and demo.data.dataset == "demo"


def test_overrides_are_typed():
    cfg = load_preset(
        "mvtec",
        {
            "train.epochs": "7",
            "data.classes": "bottle,cable",
            "train.lr": "1e-3",
            "train.deterministic": "true",
            "model.decoder.depths": [2, 2, 2, 2],
        },
    )
    assert cfg.train.epochs == 7 and isinstance(cfg.train.epochs, int)
    assert cfg.data.classes == ["bottle", "cable"]
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.deterministic is True
    assert cfg.model.decoder.depths == [2, 2, 2, 2]


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("train.epochz", 3, "train.epochz"),
        ("nope.epochs", 3, "nope"),
        ("train.epochs", "many", "train.epochs"),
        ("train.epochs", 2.5, "train.epochs"),
        ("train.deterministic", "perhaps", "train.deterministic"),
    ],
)
def test_bad_overrides_name_the_key(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        load_preset("mvtec", {key: value})


def test_parse_override():
    assert parse_override("train.epochs=5") == ("train.epochs", 5)
    assert parse_override("data.root=/x/y") == ("data.root", "/x/y")
    assert parse_override("model.decoder.depths=[1,2,3,4]") == ("model.decoder.depths", [1, 2, 3, 4])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.epochs")


def test_unknown_preset_and_preset_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nosuch'"):
        load_preset("nosuch")
    f = tmp_path / "mine.yaml"
    f.write_text("data: {dataset: folder, root: /data/x}\ntrain: {epochs: 3}\n")
    cfg = load_preset(str(f))
    assert (cfg.preset, cfg.data.root, cfg.train.epochs) == ("mine", "/data/x", 3)
    f.write_text("train: {epochs: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_preset(str(f))
    f.write_text("train: {bogus: 1}\n")
    with pytest.raises(ConfigError, match="train.bogus"):
        load_preset(str(f))


def test_resolved_config_round_trips_through_yaml():
    cfg = load_preset("visa", {"train.epochs": 3})
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    # every field is written out, defaults included
    flat = yaml.safe_load(cfg.to_yaml())
    assert set(flat) == {f.name for f in dataclasses.fields(Config)}
    assert "drop_path_rate" in flat["model"]["decoder"]
