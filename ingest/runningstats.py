"""Running statistics for one streaming pass, after netdissect's runningstats.

Every statistic shares one protocol: ``update`` with a batch, ``merge`` with a peer
(another shard, another worker), ``state_dict`` / ``load_state_dict`` to checkpoint,
``result`` to read it. State stays on the device it was created on.
"""
from __future__ import annotations

import torch

# Image ids are packed into the low 32 bits of a sort key, so they must fit there.
MAX_IMAGE_ID = 2**32 - 2
NO_IMAGE = -1


def _order_key(values: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """An int64 key whose descending order is (value descending, image id ascending).

    Ties between equal activations must go to the lower image id (docs/science.md §1); a single
    ``topk`` over unique keys gives that exactly, where ``topk`` on floats would not.
    """
    v = torch.nan_to_num(values.float(), nan=float("-inf")) + 0.0  # -0.0 -> +0.0
    bits = v.view(torch.int32).to(torch.int64)
    # Flip the magnitude bits of negative floats so the integers sort like the floats.
    bits = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    tiebreak = (2**32 - 1) - image_ids.to(torch.int64)  # empty slots (id -1) get 2**32
    tiebreak = torch.where(image_ids < 0, torch.zeros_like(tiebreak), tiebreak)
    return bits * 2**32 + tiebreak


class TopK:
    """Per channel, the ``k`` images of largest activation, with where the maximum was.

    ``values``, ``image_ids`` and ``positions`` are ``(channels, k)`` tensors sorted by
    rank; slots not yet filled hold ``image_id = -1`` and ``value = -inf``.

    Batches are buffered and folded in when the buffer holds ``buffer`` images (as netdissect
    does): one ``topk`` over k + buffer columns instead of one per batch. The key orders every
    (value, image) pair totally, so the result is the same whenever the fold happens.
    """

    def __init__(self, channels: int, k: int, device: torch.device | str = "cpu", buffer: int | None = None,
                 group: "TopKGroup | None" = None):
        self.k = k
        self.buffer = max(k, 256) if buffer is None else buffer
        self._values = torch.full((channels, k), float("-inf"), device=device)
        self._image_ids = torch.full((channels, k), NO_IMAGE, dtype=torch.int64, device=device)
        self._positions = torch.zeros((channels, k), dtype=torch.int32, device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending_n = 0
        self.count = 0  # images seen
        self.group = None
        if group is not None:
            group.join(self)

    @property
    def channels(self) -> int:
        return self._values.shape[0]

    @property
    def values(self) -> torch.Tensor:
        self._flush()
        return self._values

    @property
    def image_ids(self) -> torch.Tensor:
        self._flush()
        return self._image_ids

    @property
    def positions(self) -> torch.Tensor:
        self._flush()
        return self._positions

    def update(self, values: torch.Tensor, image_ids: torch.Tensor, positions: torch.Tensor) -> None:
        """Add a batch: ``values`` and ``positions`` are ``(batch, channels)``, ``image_ids`` ``(batch,)``."""
        self._pending.append((values.to(self._values.dtype), image_ids.to(self._image_ids.device),
                              positions.to(torch.int32)))
        self._pending_n += values.shape[0]
        self.count += values.shape[0]
        if self.group is None and self._pending_n >= self.buffer:
            self._flush()  # in a group, the group's end_batch folds

    def _flush(self) -> None:
        if self.group is not None:
            self.group.fold()
        else:
            self._flush_alone()

    def _flush_alone(self) -> None:
        if not self._pending:
            return
        values = torch.cat([v for v, _, _ in self._pending]).t()
        ids = torch.cat([i for _, i, _ in self._pending]).view(1, -1).expand(self.channels, -1)
        positions = torch.cat([p for _, _, p in self._pending]).t()
        self._pending, self._pending_n = [], 0
        self._absorb(values, ids, positions, 0)

    def merge(self, other: "TopK") -> None:
        """Absorb another reducer's state; a (channel, image) present in both is kept once."""
        if other.channels != self.channels:  # another k is fine: a batch's own top-k, say
            raise ValueError(f"cannot merge TopK({other.channels}, {other.k}) into TopK({self.channels}, {self.k})")
        device = self.values.device
        self._absorb(other.values.to(device), other.image_ids.to(device), other.positions.to(device), other.count,
                     dedupe=True)

    def _absorb(self, values, image_ids, positions, count, dedupe=False):
        values = torch.cat([self._values, values.to(self._values.dtype)], dim=1)
        image_ids = torch.cat([self._image_ids, image_ids], dim=1)
        positions = torch.cat([self._positions, positions], dim=1)
        self._values, self._image_ids, self._positions = _keep_top(self.k, values, image_ids, positions, dedupe)
        self.count += count

    def result(self) -> dict[str, torch.Tensor]:
        return {"values": self.values, "image_ids": self.image_ids, "positions": self.positions}

    def state_dict(self) -> dict:
        # clone: after a group fold the tensors are views of all layers' storage, which torch.save would keep whole
        return {"k": self.k, "count": self.count, **{n: t.cpu().clone() for n, t in self.result().items()}}

    def load_state_dict(self, state: dict) -> None:
        device = self._values.device
        self.k, self.count = int(state["k"]), int(state["count"])
        self._pending, self._pending_n = [], 0
        self._values = state["values"].to(device)
        self._image_ids = state["image_ids"].to(device)
        self._positions = state["positions"].to(device)

    @classmethod
    def from_state_dict(cls, state: dict, device="cpu", group: "TopKGroup | None" = None) -> "TopK":
        stat = cls(state["values"].shape[0], int(state["k"]), device, group=group)
        stat.load_state_dict(state)
        return stat



def _keep_top(k: int, values: torch.Tensor, image_ids: torch.Tensor, positions: torch.Tensor, dedupe: bool):
    """Per row, the ``k`` columns of largest (value, lower image id) key, sorted by rank."""
    key = _order_key(values, image_ids)
    if dedupe:
        # Same image twice in one channel: keep one copy (equal keys sort side by side).
        key, order = key.sort(dim=1, descending=True)
        dup = torch.zeros_like(key, dtype=torch.bool)
        dup[:, 1:] = (key[:, 1:] == key[:, :-1]) & (image_ids.gather(1, order)[:, 1:] >= 0)
        key = key.masked_fill(dup, torch.iinfo(torch.int64).min)
        values, image_ids, positions = (t.gather(1, order) for t in (values, image_ids, positions))
    _, top = key.topk(min(k, key.shape[1]), dim=1, largest=True, sorted=True)
    values, image_ids, positions = values.gather(1, top), image_ids.gather(1, top), positions.gather(1, top)
    if dedupe:
        values = values.masked_fill(key.gather(1, top) == torch.iinfo(torch.int64).min, float("-inf"))
        image_ids = image_ids.masked_fill(torch.isneginf(values), NO_IMAGE)
    return values, image_ids, positions


class TopKGroup:
    """``TopK``s fed the same images (one per layer of a scan) fold their buffers together.

    Their channels are stacked so one key tensor, one ``topk`` and three gathers serve many layers
    at once, instead of one set of kernels per layer: on a GPU the per-layer kernels of a deep
    network cost more in launches than in work (on a CPU the stacked fold is a little slower, well
    under 1 % of the forward pass). Rows are independent, so each member ends exactly as if it had
    folded alone.

    Members only buffer on ``update``; the owner calls ``end_batch`` once every layer of a batch is
    in (``ScanState.update_batch``), so all members fold at the same batch and stay aligned. Members
    fold together when their buffers hold the very same id tensors (the scan hands every layer the
    batch's one tensor) and share ``k`` and device; any other member folds alone. A fold is cut into
    slices of at most ``max_bytes`` of working memory.
    """

    def __init__(self, max_bytes: int = 256 << 20):
        self.members: list[TopK] = []
        self.max_bytes = max_bytes
        self.folds = 0  # stacked folds made (for tests)

    def join(self, top: TopK) -> None:
        top.group = self
        self.members.append(top)

    def leave(self, top: TopK) -> None:
        top._flush()
        self.members = [m for m in self.members if m is not top]
        top.group = None

    def end_batch(self) -> None:
        if any(m._pending_n >= m.buffer for m in self.members):
            self.fold()

    def fold(self) -> None:
        classes: dict[tuple, list[TopK]] = {}
        for m in self.members:
            if m._pending:
                key = (m.k, m._values.device, tuple(id(i) for _, i, _ in m._pending))
                classes.setdefault(key, []).append(m)
        for members in classes.values():
            # ~48 bytes per element: values, ids, positions, the key and its topk scratch.
            width = members[0].k + members[0]._pending_n
            piece: list[TopK] = []
            for m in members:
                if piece and sum(t.channels for t in piece + [m]) * width * 48 > self.max_bytes:
                    self._fold_together(piece)
                    piece = []
                piece.append(m)
            self._fold_together(piece)

    def _fold_together(self, members: list[TopK]) -> None:
        if len(members) == 1:
            members[0]._flush_alone()
            return
        first = members[0]
        ids = torch.cat([i for _, i, _ in first._pending])
        # Each member's rows [state | its buffer, transposed], then the members stacked: the
        # transposes stay small enough for the caches.
        values = torch.cat([torch.cat([m._values, torch.cat([v for v, _, _ in m._pending]).t()], 1)
                            for m in members])
        positions = torch.cat([torch.cat([m._positions, torch.cat([p for _, _, p in m._pending]).t()], 1)
                               for m in members])
        state_ids = torch.cat([m._image_ids for m in members])
        image_ids = torch.cat([state_ids, ids.view(1, -1).expand(len(state_ids), -1)], 1)
        values, image_ids, positions = _keep_top(first.k, values, image_ids, positions, dedupe=False)
        sizes = [m.channels for m in members]
        for m, v, i, p in zip(members, values.split(sizes), image_ids.split(sizes), positions.split(sizes)):
            m._values, m._image_ids, m._positions = v, i, p
            m._pending, m._pending_n = [], 0
        self.folds += 1


class ClassMean:
    """Per class, the running mean of a feature vector (class representative vectors, docs/science.md §9)."""

    def __init__(self, classes: int, dims: int, device="cpu"):
        self.sums = torch.zeros((classes, dims), dtype=torch.float64, device=device)
        self.counts = torch.zeros(classes, dtype=torch.int64, device=device)

    def update(self, features: torch.Tensor, class_ids: torch.Tensor) -> None:
        # A batch's sums, then one addition: the same arithmetic as merging a state of that batch,
        # so a local run, Ray batches and merged shards give identical sums.
        class_ids = class_ids.to(self.sums.device)
        delta = torch.zeros_like(self.sums).index_add_(0, class_ids, features.to(torch.float64))
        self.sums += delta
        self.counts.index_add_(0, class_ids, torch.ones_like(class_ids))

    def merge(self, other: "ClassMean") -> None:
        self.sums += other.sums.to(self.sums.device)
        self.counts += other.counts.to(self.counts.device)

    def result(self) -> torch.Tensor:
        return self.sums / self.counts.clamp(min=1).unsqueeze(1)

    def state_dict(self) -> dict:
        return {"sums": self.sums.cpu(), "counts": self.counts.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.sums = state["sums"].to(self.sums.device)
        self.counts = state["counts"].to(self.counts.device)
