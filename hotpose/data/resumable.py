"""A training loader whose order a resumed run reproduces: per-epoch seeded shuffling, resumable mid-epoch.

``DataLoader(shuffle=True)`` draws each epoch's order from the global torch RNG, whose state a resumed run
does not have, so a resumed run sees other batches than the run it continues. Here the order of epoch
``e`` is ``randperm`` seeded with ``seed + e`` from a private generator (the global RNG is not touched,
not even for the loader's base seed), and a run restarted mid-epoch skips the batches the checkpoint
says were done. Together with :class:`hotpose.rng_state.RandomState` (the RNG states of the model's own
randomness), a resumed run repeats the uninterrupted one.

Under DDP Lightning replaces the sampler with its ``DistributedSampler`` (also seeded from seed + epoch);
the mid-epoch skip then does not apply.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def run_seed() -> int:
    """The seed of this run: what ``pl.seed_everything`` set (``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class EpochPermutation(Sampler[int]):
    """Indices ``0..size-1`` in an order that depends only on ``seed`` and the epoch (``set_epoch``)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = int(size)
        self.seed = int(seed)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, samples: int) -> None:
        """The next iteration starts after its first ``samples`` indices (a run resumed mid-epoch)."""
        self._skip = int(samples)

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return iter(self.order(self.epoch)[skip:])

    def __len__(self) -> int:
        return self.size


class ResumableLoader(DataLoader):
    """A shuffling training ``DataLoader`` over :class:`EpochPermutation` that Lightning checkpoints.

    Lightning saves ``state_dict()`` with the fit loop and calls ``load_state_dict`` before it iterates
    again; the epoch and the batches done are then read from the restored loop (``progress``), which
    counts what was trained, not what was prefetched.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, progress: Any = None, **kwargs: Any) -> None:
        sampler = EpochPermutation(len(dataset), seed)  # type: ignore[arg-type]
        super().__init__(dataset, batch_size=batch_size, sampler=sampler,
                         generator=torch.Generator().manual_seed(seed), **kwargs)
        self.progress = progress  # () -> (epoch, batches done in it), read from the trainer

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.sampler.seed, "epoch": self.sampler.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = self.progress() if self.progress is not None else (int(state["epoch"]), 0)
        self.sampler.set_epoch(epoch)
        self.sampler.skip_next(done * int(self.batch_size))
