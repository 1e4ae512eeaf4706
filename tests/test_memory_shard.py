"""A training worker's shard: read through Ray Data once and replayed from memory, unless any rank's does not fit."""

from __future__ import annotations

import numpy as np

from train_jobs.detector_data import MemoryShard


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
    assert shard.read_once and not shard.streaming and not shard.settled
    shard.settle(all_fit=True)
    for _ in range(3):
        assert [a.tolist() for a in shard.iter_rows()] == [a.tolist() for a in first]
    assert source.reads == 1


def test_a_shard_past_its_budget_streams_every_epoch():
    source = CountingSource(6)  # 240 bytes
    shard = MemoryShard(source, lambda a: a.nbytes, max_bytes=200)
    assert len(list(shard)) == 6 and shard.streaming
    shard.settle(all_fit=False)
    assert [len(list(shard)) for _ in range(2)] == [6, 6]
    assert source.reads == 3


def test_ranks_that_disagree_all_stream():
    """Ray Data starts a split's next epoch only when every rank reads it: a rank whose shard fitted must
    read again when another rank's did not, or the other rank waits forever."""
    source = CountingSource(3)
    shard = MemoryShard(source, lambda a: a.nbytes, max_bytes=200)
    list(shard)
    assert not shard.streaming
    shard.settle(all_fit=False)  # another rank streamed
    list(shard)
    list(shard)
    assert source.reads == 3 and shard.streaming


def test_before_the_ranks_agree_a_second_pass_reads_again():
    """After a resume the training files are first read by the first epoch, and settled at its end."""
    source = CountingSource(2)
    shard = MemoryShard(source, lambda a: a.nbytes, max_bytes=200)
    list(shard)
    list(shard)
    assert source.reads == 2
    shard.settle(all_fit=True)
    list(shard)
    assert source.reads == 2
