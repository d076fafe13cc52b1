"""A resumed run gives the uninterrupted run's result: same final weights, same test P1.

Tiny quickstart-shaped runs on the embedded data, with drop path on so that the model's own randomness
matters. Interruptions: SIGTERM in the middle of epoch 1 (resume from ``sigterm.ckpt``), and a run that
ended after epoch 0 (what a SIGKILL in epoch 1 leaves: ``last.ckpt`` of epoch 0).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import TINY, _compose

from hotpose.checkpoints import load_torch_file
from hotpose.data.resumable import EpochPermutation
from hotpose.train import train

RUN = [*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
       "trainer.limit_test_batches=2", "backbone.net.drop_path=0.2", "data.batch_size=16"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_torch_file(run / "checkpoints" / "last.ckpt")["state_dict"]


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    run = tmp_path_factory.mktemp("uninterrupted")
    summary = train(_compose(run, RUN))
    return run, summary["test_mpjpe_mm"]


def test_resume_after_sigterm_mid_epoch_repeats_the_uninterrupted_run(tmp_path: Path, uninterrupted) -> None:
    reference, p1 = uninterrupted
    stop = ["+callbacks.stop._target_=fault_helpers.SignalAtStep", "+callbacks.stop.step=6"]  # epoch 1, batch 2
    with pytest.raises(SystemExit) as stopped:
        train(_compose(tmp_path / "a", [*RUN, *stop]))
    assert stopped.value.code == 3
    saved = tmp_path / "a" / "checkpoints" / "sigterm.ckpt"
    assert (load_torch_file(saved)["epoch"], load_torch_file(saved)["global_step"]) == (1, 6)
    # into the same run folder, as the SIGTERM line says: Lightning then also restores the best-so-far
    resumed = train(_compose(tmp_path / "a", [*RUN, f"ckpt_path={saved}"]))
    _assert_same(_weights(reference), _weights(tmp_path / "a"))
    assert resumed["test_mpjpe_mm"] == pytest.approx(p1, abs=1e-4)


def test_resume_from_last_ckpt_after_a_kill_repeats_the_uninterrupted_run(tmp_path: Path, uninterrupted) -> None:
    reference, p1 = uninterrupted
    train(_compose(tmp_path / "a", [*RUN, "trainer.max_epochs=1"]))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    resumed = train(_compose(tmp_path / "a", [*RUN, f"ckpt_path={last}"]))
    _assert_same(_weights(reference), _weights(tmp_path / "a"))
    assert resumed["test_mpjpe_mm"] == pytest.approx(p1, abs=1e-4)


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    a, b = EpochPermutation(10, seed=5), EpochPermutation(10, seed=5)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global RNG plays no part
    assert list(b) == first and sorted(first) == list(range(10))
    a.set_epoch(1)
    assert list(a) != first and list(a) == b.order(1)
    a.skip_next(4)
    assert list(a) == b.order(1)[4:] and list(a) == b.order(1)  # the skip applies once
