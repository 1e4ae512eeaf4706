"""How a Ray Train worker gets its share of a dataset and keeps it between epochs.

Every worker iterates each whole (small) dataset in order and keeps every ``world``-th row
(``rank_share``): Ray Train's own split (``streaming_split(equal=True)``) drops up to
world - 1 rows to equalise the shards, and a row here is a whole file, so one would never
be trained on. What a worker reads (decoded audio, features, validation batches) it keeps in
memory for later epochs while it fits (``MemoryShard``), and reads afresh when it does not.
Unequal shares give the ranks unequal batch counts: training runs under DDP's Join
(``joined``) and validation on the bare module (``bare_module``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import nn

SHARD_MEMORY_BYTES = 1 << 30  # a worker keeps a dataset shard up to this size in memory between epochs


def rank_share(rows, rank: int, world: int) -> Iterator[dict[str, Any]]:
    """This rank's rows of a Ray Train dataset shard iterated whole (``whole_datasets_in_order``):
    every ``world``-th row, so the ranks share every row between them."""
    return itertools.islice(rows.iter_rows(), rank, None, world)


def whole_datasets_in_order():
    """The TorchTrainer ``dataset_config`` under which every worker iterates each whole dataset in its
    order and keeps its share (``rank_share``)."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return DataConfig(datasets_to_split=[], execution_options=options)


def joined(model: nn.Module):
    """DDP's Join when several ranks train (their shares give unequal batch counts), else nothing."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        from torch.distributed.algorithms.join import Join

        return Join([model])
    return contextlib.nullcontext()


def bare_module(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper: a forward without collectives (validation, where ranks hold
    unequal numbers of batches and DDP's forward would broadcast buffers once per batch)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class MemoryShard:
    """A worker's share of the rows (or of batches made from them), read once and replayed from memory by
    later epochs while it fits in ``max_bytes``; a larger one is read afresh every epoch (streamed).

    Each rank reads its own share of a whole dataset (``rank_share``), so a rank's choice binds no
    other rank.
    """

    def __init__(self, read: Callable[[], Iterable[Any]], nbytes: Callable[[Any], int], max_bytes: int = SHARD_MEMORY_BYTES):
        self._read, self._nbytes, self.max_bytes = read, nbytes, max_bytes
        self._items: list[Any] | None = None
        self.streaming = False  # this share did not fit

    def __iter__(self) -> Iterator[Any]:
        if self._items is not None:
            yield from self._items
            return
        items: list[Any] | None = None if self.streaming else []
        total = 0
        for item in self._read():
            if items is not None:
                total += self._nbytes(item)
                if total > self.max_bytes:
                    items, self.streaming = None, True
                else:
                    items.append(item)
            yield item
        if items is not None:
            self._items = items  # only a pass read to its end is kept

    iter_rows = __iter__  # the shard interface of the loops' batch iterators
