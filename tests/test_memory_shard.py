"""A training worker's share: read once and replayed from memory while it fits, streamed otherwise."""

from __future__ import annotations

import numpy as np

from train_jobs.shards import MemoryShard


class CountingSource:
    def __init__(self, n: int):
        self.items = [np.full(10, i, dtype=np.float32) for i in range(n)]  # 40 bytes each
        self.reads = 0

    def __call__(self):
        self.reads += 1
        yield from self.items


def test_a_shard_that_fits_is_read_once_and_replayed():
    source = CountingSource(5)
    shard = MemoryShard(source, lambda a: a.nbytes, max_bytes=200)
    first = [a.copy() for a in shard]
    for _ in range(3):
        assert [a.tolist() for a in shard.iter_rows()] == [a.tolist() for a in first]
    assert source.reads == 1 and not shard.streaming


def test_a_shard_past_its_budget_streams_every_epoch():
    source = CountingSource(6)  # 240 bytes
    shard = MemoryShard(source, lambda a: a.nbytes, max_bytes=200)
    assert len(list(shard)) == 6 and shard.streaming
    assert [len(list(shard)) for _ in range(2)] == [6, 6]
    assert source.reads == 3


def test_a_pass_left_early_is_not_kept():
    """A first epoch cut short (an exception, a consumer that stops) must not leave a partial shard behind."""
    source = CountingSource(4)
    shard = MemoryShard(source, lambda a: a.nbytes, max_bytes=200)
    for i, _ in enumerate(shard):
        if i == 1:
            break
    assert len(list(shard)) == 4 and len(list(shard)) == 4
    assert source.reads == 2
