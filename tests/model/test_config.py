"""ModelConfig serialisation and the paper's trainable-parameter counts (docs/model.md §4)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from crystalframer import FRAME_METHODS, CrystalFramer, ModelConfig


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _non_default() -> ModelConfig:
    return ModelConfig(frame_method="weighted_pca", num_layers=3, n_targets=2, target_names=["e_form", "gap"],
                       target_units=["eV/atom", "eV"], scale_real=1.3, angle_bases=16, cos_abs=True,
                       pca_unit_vectors=True, symm_break_noise=2e-5, max_atoms=500)


@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig.light(), ModelConfig.crystalformer(), _non_default()],
                         ids=["default", "light", "crystalformer", "custom"])
def test_json_yaml_round_trip(cfg, tmp_path):
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert ModelConfig.from_yaml(cfg.to_yaml()) == cfg
    assert json.loads(cfg.to_json()) == dataclasses.asdict(cfg)
    assert yaml.safe_load(cfg.to_yaml()) == dataclasses.asdict(cfg)
    for name in ("cfg.json", "cfg.yaml", "cfg.yml"):
        cfg.save(tmp_path / name)
        loaded = ModelConfig.load(tmp_path / name)
        assert loaded == cfg and type(loaded.angle_coef) is float and type(loaded.num_layers) is int
    assert (tmp_path / "cfg.json").read_text().lstrip().startswith("{")
    assert yaml.safe_load((tmp_path / "cfg.yaml").read_text())["frame_method"] == cfg.frame_method


def test_unknown_keys_and_bad_values_are_rejected():
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"frame_method": "max", "not_a_key": 1})
    with pytest.raises(ValueError, match="frame_method"):
        ModelConfig(frame_method="maximum")
    with pytest.raises(ValueError):
        ModelConfig(model_dim=100, num_heads=8)


def test_presets():
    light = ModelConfig.light()
    assert (light.angle_bases, light.angle_width_scale, light.angle_coef, light.dist_coef) == (16, 1.0, 6.0, 1.5)
    assert ModelConfig.crystalformer().frame_method == "none"
    d = ModelConfig()
    assert (d.frame_method, d.num_layers, d.model_dim, d.num_heads, d.ff_dim, d.dist_bases, d.angle_bases) == (
        "max", 4, 128, 8, 512, 64, 64)
    assert d.cutoff == pytest.approx(5.5 * 1.4 / 0.5 ** 0.5)
    assert not d.head_cutoff and d.head_cut == (float("-inf"), float("-inf"))
    per_head = ModelConfig(head_cutoff=True, cutoff_sigmas=5.75)
    assert per_head.head_cut == pytest.approx((-0.5 * 5.75**2, -0.5 * 5.25**2))
    assert set(FRAME_METHODS) >= {"none", "max", "weighted_pca", "static", "pca", "lattice"}
    assert ModelConfig.preset("light") == light


@pytest.mark.parametrize("cfg, expected, rounded", [
    (ModelConfig.crystalformer(), 853505, "853.5K"),
    (ModelConfig(), 951809, "951.8K"),
    (ModelConfig.light(), 878081, "878.1K"),
], ids=["none", "max", "light"])
def test_trainable_parameter_counts(cfg, expected, rounded):
    model = CrystalFramer(cfg)
    count = trainable(model)
    assert count == expected
    assert f"{count / 1000:.1f}K" == rounded
    # Frozen normalisation statistics are buffers, not trainable parameters.
    assert "blocks.0.attn.gauss_scale" in model.state_dict()
    assert all("gauss_scale" not in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("method", ["max", "weighted_pca", "static", "pca", "lattice"])
def test_every_framed_method_has_the_same_count(method):
    assert trainable(CrystalFramer(ModelConfig(frame_method=method))) == 951809
