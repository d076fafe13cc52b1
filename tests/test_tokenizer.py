"""The VQ pose tokenizer: quantiser maths on hand-checked cases, bones round trip, and `task=tokenizer` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from hotpose.models.tokenizer import (
    EMAQuantizer,
    PoseTokenizer,
    bone_directions,
    ema_update,
    forward_kinematics,
    load_tokenizer,
    nearest_code,
    perplexity,
    tokenizer_state,
)

TINY = dict(tokens=4, codebook_size=8, code_dim=4, width=8, depth=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    GlobalHydra.instance().clear()


def _pose(n: int = 5) -> torch.Tensor:
    pose = torch.randn(n, 17, 3) * 0.2
    return pose - pose[:, :1]


def test_nearest_code_by_hand() -> None:
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[0.1, 0.1], [0.9, -0.3], [0.2, 1.2], [0.6, 0.0]])
    # distances² row 3: 0.36, 0.16, 4.36 → code 1; row 2: 1.48, 2.08, 0.68 → code 2
    assert nearest_code(z, codebook).tolist() == [0, 1, 2, 1]
    with pytest.raises(ValueError, match="codebook"):
        nearest_code(z, torch.zeros(3, 3))


def test_ema_update_by_hand() -> None:
    count, total = torch.tensor([1.0, 1.0]), torch.tensor([[0.0], [1.0]])
    z, index = torch.tensor([[0.0], [0.2], [1.0]]), torch.tensor([0, 0, 1])
    new_count, new_total = ema_update(count, total, z, index, decay=0.5)
    torch.testing.assert_close(new_count, torch.tensor([1.5, 1.0]))  # 0.5·1 + 0.5·2, 0.5·1 + 0.5·1
    torch.testing.assert_close(new_total, torch.tensor([[0.1], [1.0]]))  # 0.5·0 + 0.5·0.2, 0.5·1 + 0.5·1


def test_quantizer_training_step_updates_codebook_by_hand() -> None:
    q = EMAQuantizer(codebook_size=2, code_dim=1, decay=0.5, dead_threshold=0.1)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0], [1.0]]))
        q.ema_total.copy_(q.codebook)
        q.initialised.fill_(True)
    out = q.train()(torch.tensor([[0.0], [0.2], [1.0]]))
    assert out.index.tolist() == [0, 0, 1]
    torch.testing.assert_close(q.codebook, torch.tensor([[0.1 / 1.5], [1.0]]))
    torch.testing.assert_close(out.perplexity, torch.tensor(3 ** (1 / 3) * 1.5 ** (2 / 3)))  # exp(H(2/3, 1/3))
    before = q.codebook.clone()
    q.eval()(torch.tensor([[5.0]]))  # eval: no update
    torch.testing.assert_close(q.codebook, before)


def test_quantizer_initialises_from_first_batch() -> None:
    torch.manual_seed(0)
    q = EMAQuantizer(codebook_size=3, code_dim=2, decay=0.99).train()
    z = torch.tensor([[10.0, 10.0], [20.0, 20.0]])
    q(z)
    assert bool(q.initialised)
    for code in q.codebook:  # every code is (an EMA step away from) one of the batch rows
        assert min(float((code - row).norm()) for row in z) < 1.0


def test_dead_code_is_reset_to_a_batch_vector() -> None:
    torch.manual_seed(0)
    q = EMAQuantizer(codebook_size=2, code_dim=1, decay=0.5, dead_threshold=1.0)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0], [100.0]]))
        q.ema_total.copy_(q.codebook)
        q.initialised.fill_(True)
    z = torch.tensor([[0.0], [0.5], [1.0]])
    q.train()(z)  # code 1 is never chosen: count 0.5·1 + 0 < 1 → re-seeded from z
    assert float(q.codebook[1]) in (0.0, 0.5, 1.0)
    assert float(q.ema_count[1]) == 1.0
    torch.testing.assert_close(q.codebook[0], torch.tensor([0.375]))  # (0.5·0 + 0.5·1.5) / (0.5·1 + 0.5·3)


def test_straight_through_gradient() -> None:
    q = EMAQuantizer(codebook_size=4, code_dim=3).eval()
    z = torch.randn(5, 3, requires_grad=True)
    out = q(z)
    torch.testing.assert_close(out.quantized, q.codebook[out.index])
    weights = torch.randn(5, 3)
    (out.quantized * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # identity gradient through the quantiser


def test_perplexity_by_hand() -> None:
    assert float(perplexity(torch.tensor([3, 3, 3]), 8)) == pytest.approx(1.0)
    assert float(perplexity(torch.tensor([0, 1, 2, 3]), 8)) == pytest.approx(4.0)


def test_bones_round_trip() -> None:
    pose = _pose()
    directions, lengths = bone_directions(pose)
    assert lengths.shape == (5, 16) and directions[:, 0].abs().sum() == 0
    torch.testing.assert_close(forward_kinematics(directions, lengths), pose, atol=1e-6, rtol=0)


@pytest.mark.parametrize("representation", ["positions", "bones"])
def test_soft_decoding_equals_hard_decoding_for_one_hot_logits(representation: str) -> None:
    torch.manual_seed(0)
    tok = PoseTokenizer(**TINY, representation=representation).eval()
    index = torch.randint(0, 8, (3, 4))
    logits = torch.nn.functional.one_hot(index, 8).float() * 1e4  # softmax is exactly one-hot in float32
    lengths = bone_directions(_pose(3))[1] if representation == "bones" else None
    hard, soft = tok.decode_index(index, lengths), tok.decode_logits(logits, lengths)
    torch.testing.assert_close(soft, hard)
    assert hard.shape == (3, 17, 3) and hard[:, 0].abs().sum() == 0  # root at the origin


def test_tokenizer_forward_shapes_and_errors(tmp_path: Path) -> None:
    tok = PoseTokenizer(**TINY, representation="positions").train()
    out = tok(_pose())
    assert out.pose.shape == (5, 17, 3) and out.index.shape == (5, 4) and out.commitment.ndim == 0
    out.pose.square().mean().backward()
    assert tok.encoder[0].weight.grad.abs().sum() > 0  # the encoder learns through the straight-through path
    assert tok.tokenize(_pose(2)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 3\)"):
        tok(torch.zeros(2, 16, 3))
    with pytest.raises(ValueError, match="representation"):
        PoseTokenizer(representation="angles")
    torch.save(tokenizer_state(tok), tmp_path / "tokenizer.pt")
    loaded = load_tokenizer(tmp_path / "tokenizer.pt").eval()
    torch.testing.assert_close(loaded.decode_index(out.index), tok.eval().decode_index(out.index))
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.pt")


def test_task_tokenizer_trains_end_to_end(tmp_path: Path) -> None:
    from hotpose.train import train

    overrides = [f"hydra.run.dir={tmp_path}", "task=tokenizer", "experiment=smoke", "threads=1",
                 "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=csv",
                 "tokenizer.tokens=4", "tokenizer.codebook_size=16", "tokenizer.code_dim=4", "tokenizer.width=8",
                 "data.batch_size=64", "data.eval_batch_size=4096"]
    with initialize(version_base="1.3", config_path="../configs"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    assert cfg.data.frames == 1 and cfg.task.name == "tokenizer"
    summary = train(cfg)
    assert 0 < summary["test_mpjpe_mm"] < 2000 and summary["test_p_mpjpe_mm"] <= summary["test_mpjpe_mm"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    overall = metrics["test"]["exact"]["overall"]
    assert 0 < overall["codebook_usage"] <= 1 and 1 <= overall["perplexity"] <= 16
    assert overall["poses"] > 0
    # both the tokenizer.pt and the Lightning checkpoint load as the token head's tokenizer
    for path in (tmp_path / "tokenizer.pt", Path(summary["best_checkpoint"])):
        tok = load_tokenizer(path)
        assert tok.tokens == 4 and tok.codebook_size == 16 and bool(tok.quantizer.initialised)
