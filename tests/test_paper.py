"""The paper protocol's set-up: official batch size and seed from converted checkpoints, official numerics.

The end-to-end comparison with the official scripts' numbers is ``tests/paper/test_official_numbers.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from hotpose.convert import main as convert_main
from hotpose.lit import HotposeModule
from hotpose.models import layers
from hotpose.models.official import official_recipe
from hotpose.paper import paper_setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
from test_official import TOLERANCE, extra_seeds_here, fixture  # noqa: E402


def _cfg(**top) -> DictConfig:
    return OmegaConf.create({"data": {"eval_batch_size": 16, "official_layout": False},
                             "paper_batch_size": None, "paper_seed": None, **top})


def test_converted_checkpoints_carry_the_official_test_batch_and_seed() -> None:
    for variant in ("mixste", "hot_mixste", "tpc_mixste", "motionbert"):
        assert official_recipe(variant)["paper_protocol"] == {"batch_size": 4, "seed": 1126}
    for variant in ("mhformer", "tpc_mhformer"):
        assert official_recipe(variant)["paper_protocol"] == {"batch_size": 256, "seed": 1}


def test_paper_setup_takes_the_official_values_unless_told_otherwise() -> None:
    hparams = {"paper_protocol": {"batch_size": 256, "seed": 1}}
    cfg = _cfg()
    overrides, note = paper_setup(cfg, hparams)
    assert overrides == {"test_seed": 1}
    assert cfg.data.eval_batch_size == 256 and cfg.data.official_layout is True
    assert note.startswith("batch size 256 (the official test script's)") and "seeded 1" in note
    cfg = _cfg(paper_batch_size=8, paper_seed=3)
    overrides, note = paper_setup(cfg, hparams)
    assert overrides == {"test_seed": 3} and cfg.data.eval_batch_size == 8
    assert "batch size 8 (paper_batch_size)" in note
    # a hotpose-trained checkpoint has no official values: data.eval_batch_size, no reseeding
    cfg = _cfg()
    overrides, note = paper_setup(cfg, {})
    assert overrides == {} and cfg.data.eval_batch_size == 16 and "no official value" in note
    with pytest.raises(ValueError, match="paper_batch_size must be >= 1"):
        paper_setup(_cfg(paper_batch_size=0), hparams)


@pytest.mark.parametrize(("variant", "sdpa_flips"), [("hot_mixste", True), ("tpc_mhformer", False)])
def test_converted_checkpoint_evaluates_with_the_official_attention(variant: str, sdpa_flips: bool,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With some seeds of EXTRA_SEEDS, SDPA's rounding flips hot_mixste's TPC selection: the LightningModule
    of a converted checkpoint runs the official explicit attention, and keeps the official frames."""
    record = extra_seeds_here(variant)
    data = fixture(variant)
    source, target = tmp_path / "m.pth", tmp_path / "m.ckpt"
    torch.save(data["weights"], source)
    convert_main(["--variant", variant, "--input", str(source), "--output", str(target),
                  *[f"--{k.replace('_', '-')}={v}" for k, v in data["overrides"].items()]])
    module = HotposeModule.load_from_checkpoint(target, map_location="cpu", weights_only=False).eval()
    assert module.hparams.official_numerics is True
    explicit = []
    attention = layers.attention
    monkeypatch.setattr(layers, "attention", lambda *a, **k: explicit.append(layers._OFFICIAL_KERNELS)
                        or attention(*a, **k))
    for seed, expected in record.items():
        torch.manual_seed(seed)
        with torch.no_grad():
            out = module(data["x"])
        assert (out.pose - expected).abs().max().item() < TOLERANCE, f"seed {seed}"
    assert explicit and all(explicit)
    # without it (SDPA), some of hot_mixste's seeds keep other frames
    module.hparams.official_numerics = False
    explicit.clear()
    worst = 0.0
    for seed, expected in record.items():
        torch.manual_seed(seed)
        with torch.no_grad():
            worst = max(worst, (module(data["x"]).pose - expected).abs().max().item())
    assert explicit and not any(explicit)
    assert (worst > 1e-3) == sdpa_flips
