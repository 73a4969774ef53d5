"""A ``DistributedSampler`` that can start in the middle of an epoch.

Exact resume needs the data order of the interrupted run: the permutation of epoch
``e`` is drawn from ``seed + e`` (as :class:`~torch.utils.data.DistributedSampler`
does), and a resumed run skips the samples its rank had already consumed. Single-
process training uses the same class with ``num_replicas=1, rank=0`` so both paths
share one ordering rule.
"""

from __future__ import annotations

import itertools
from typing import Iterator

from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """Per-rank shard of a seeded per-epoch permutation, optionally skipping a prefix.

    Args:
        dataset: the dataset to sample.
        num_replicas: number of processes (``WORLD_SIZE``).
        rank: this process's rank.
        shuffle: permute each epoch (training) or keep dataset order.
        seed: base seed; epoch ``e`` uses ``seed + e``.
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0
    ) -> None:
        # drop_last: every rank gets the same number of samples without repeating any.
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Selects epoch ``epoch``'s permutation and skips its first ``start`` samples."""
        super().set_epoch(epoch)
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"cannot start at sample {start} of an epoch of {self.num_samples}")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start
