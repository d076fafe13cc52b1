"""The pose-token output head: builds and trains with every backbone, pruner/recoverer and both pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from hotpose.lit import HotposeModule
from hotpose.models import build_model
from hotpose.models.token_head import TokenHead
from hotpose.models.tokenizer import PoseTokenizer, tokenizer_state

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TOKENIZER = {"tokens": 4, "codebook_size": 8, "code_dim": 4, "width": 8, "depth": 1}
HEAD = {"tokenizer": TOKENIZER, "hidden": 8, "heads": 2}
pytestmark = pytest.mark.filterwarnings("ignore:head=token without head.tokenizer_ckpt")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model_config(backbone: str, pruner: str, recoverer: str, pipeline: str, head: dict | None = None) -> dict:
    def load(group: str, option: str):
        return OmegaConf.load(CONFIGS / group / f"{option}.yaml")

    net = OmegaConf.merge(load("backbone", backbone).net, load("backbone_size", f"{backbone}_tiny"))
    if "depth" in net:
        net.depth = 2
    cfg = OmegaConf.create({"backbone": load("backbone", backbone), "pruner": load("pruner", pruner),
                            "recoverer": load("recoverer", recoverer), "pipeline": load("pipeline", pipeline),
                            "head": OmegaConf.merge(load("head", "token"), head or HEAD)})
    cfg = OmegaConf.merge(cfg, {"backbone": {"frames": 9, "prune_layer": 1, "prune_tokens": 5, "net": net}})
    return OmegaConf.to_container(cfg, resolve=True)


def _build(cfg: dict):
    return build_model(*(OmegaConf.create(cfg[k]) for k in ("backbone", "pruner", "recoverer", "pipeline")),
                       head_cfg=OmegaConf.create(cfg["head"]))


@pytest.mark.parametrize("backbone", ["mixste", "mhformer", "motionbert", "motionagformer"])
@pytest.mark.parametrize("pipeline, pruner, recoverer", [("seq2seq", "tpc", "tra"), ("seq2frame", "tpc", "none"),
                                                          ("seq2seq", "none", "none")])
def test_token_head_with_every_backbone(backbone: str, pipeline: str, pruner: str, recoverer: str) -> None:
    torch.manual_seed(0)
    model = _build(_model_config(backbone, pruner, recoverer, pipeline))
    assert isinstance(model.output_head, TokenHead)
    out = model(torch.randn(2, 9, 17, 2))
    frames = 5 if pruner != "none" and recoverer == "none" else 9
    assert out.pose.shape == (2, frames, 17, 3) and out.logits.shape == (2, frames, 4, 8)
    out.pose.square().mean().backward()
    assert model.output_head.classifier[1].weight.grad.abs().sum() > 0  # trained through the decoded pose
    assert all(p.grad is None for p in model.output_head.tokenizer.parameters())  # frozen
    assert not model.output_head.tokenizer.training
    if pipeline == "seq2frame":
        assert (out.frame_index == 4).any(dim=1).all()


def test_regression_head_is_unchanged() -> None:
    cfg = _model_config("mixste", "none", "none", "seq2seq")
    cfg["head"] = dict(OmegaConf.load(CONFIGS / "head" / "regression.yaml"))
    torch.manual_seed(0)
    model = _build(cfg)
    torch.manual_seed(0)
    plain = build_model(*(OmegaConf.create(cfg[k]) for k in ("backbone", "pruner", "recoverer", "pipeline")))
    x = torch.randn(1, 9, 17, 2)
    assert model.output_head is None and model(x).logits is None
    torch.testing.assert_close(model.eval()(x).pose, plain.eval()(x).pose)


def test_token_head_loads_a_trained_tokenizer_and_adds_the_code_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tokenizer = PoseTokenizer(**TOKENIZER, representation="positions")
    tokenizer.train()(torch.randn(64, 17, 3) * 0.2)  # initialises the codebook
    torch.save(tokenizer_state(tokenizer), tmp_path / "tokenizer.pt")
    head = {**HEAD, "tokenizer_ckpt": str(tmp_path / "tokenizer.pt"), "tokenizer": {}, "ce_weight": 0.5}
    cfg = _model_config("motionbert", "tpc", "tra", "seq2seq", head)
    module = HotposeModule(model=cfg, loss={"_target_": "hotpose.losses.PoseLoss", "mpjpe": 1.0},
                           optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3})
    torch.testing.assert_close(module.net.output_head.tokenizer.quantizer.codebook, tokenizer.quantizer.codebook)
    assert module.net.output_head.tokenizer.representation == "positions"
    batch = {"input_2d": torch.randn(2, 9, 17, 2), "target_3d": torch.randn(2, 9, 17, 3) * 0.2,
             "valid": torch.ones(2, 9, dtype=torch.bool)}
    out = module.net(batch["input_2d"])
    terms = module.net.head_terms(out, batch["target_3d"], batch["valid"])
    weight, ce = terms["token_ce"]
    assert weight == 0.5 and 0 < float(ce.detach()) < 10
    loss = module.training_step(batch, 0)
    loss.backward()
    assert module.net.output_head.classifier[1].weight.grad.abs().sum() > 0


def test_token_head_bad_input() -> None:
    head = TokenHead(dim=16, tokenizer=TOKENIZER, hidden=8, heads=2)
    with pytest.raises(ValueError, match=r"\(b, f, n, 16\)"):
        head(torch.zeros(1, 9, 17, 8))
    with pytest.raises(ValueError, match="divisible"):
        TokenHead(dim=16, tokenizer=TOKENIZER, hidden=9, heads=2)
