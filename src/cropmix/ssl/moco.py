"""MoCo v2 (Chen et al. 2020): query encoder, momentum key encoder, negative queue, InfoNCE.

The backbone is any module with `.features(x)` (float images in [0, 1] -> (B, feature_dim)) and
`.feature_dim`, e.g. `cropmix.models.build_model("resnet18", ...)`; its state dict is kept as is,
so a pre-trained backbone loads straight into the same model for fine-tuning.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as nnf

from cropmix.models.size import check_parameter_count


class ProjectionHead(nn.Sequential):
    """MoCo v2's MLP head: Linear, ReLU, Linear."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    @staticmethod
    def parameter_count(in_dim: int, hidden_dim: int, out_dim: int) -> int:
        """The parameters such a head would have: a formula, so a huge request is refused unbuilt."""
        return (in_dim + 1) * hidden_dim + (hidden_dim + 1) * out_dim


def gather_all(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all processes (no gradient); `x` itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _check_moco_size(backbone: nn.Module, feat: int, hidden_dim: int, dim: int, queue_size: int) -> None:
    """Refuse, before anything is allocated, a MoCo whose two encoders, two heads and queue together exceed
    MAX_PARAMETERS values: its sizes may come from a received config or checkpoint."""
    backbone_values = sum(t.numel() for t in (*backbone.parameters(), *backbone.buffers()))
    head = ProjectionHead.parameter_count(feat, hidden_dim, dim)
    what = f"MoCo (dim={dim}, hidden_dim={hidden_dim}, queue_size={queue_size}, feature_dim={feat})"
    check_parameter_count(2 * (backbone_values + head) + queue_size * dim, what)


class MoCo(nn.Module):
    """MoCo v2 around `backbone`.

    Args:
        backbone: a module with `.features(x)` and `.feature_dim`.
        dim: projection output size (128 in MoCo v2).
        hidden_dim: projection hidden size (default: the backbone's feature_dim).
        queue_size: number of negative keys kept (65536 on ImageNet; it must be a multiple of the global batch).
        momentum: key encoder update, key = m * key + (1 - m) * query.
        temperature: InfoNCE temperature (0.2 in MoCo v2).
        bn_splits: split BatchNorm, as in the MoCo CIFAR demo: both encoders see the batch in this many
            chunks, each normalised with its own statistics, and the keys are shuffled before they are
            chunked. A query's BatchNorm statistics then come from other images than its key's, so the
            model cannot find its positive through them (1 turns it off: both see the whole batch).

    Under DDP each process chunks and shuffles only its own batch: the chunks are per process (BatchNorm
    is not synchronised) and keys never move between processes, unlike MoCo's cross-GPU shuffle BN. The
    split is what separates a query's statistics from its key's there too, so keep bn_splits >= 2 (with
    1, each process's query and key batches hold the same images). The negatives are the keys of all
    processes, gathered into the queue.
    """

    def __init__(
        self,
        backbone: nn.Module,
        dim: int = 128,
        hidden_dim: int | None = None,
        queue_size: int = 4096,
        momentum: float = 0.99,
        temperature: float = 0.2,
        bn_splits: int = 4,
    ) -> None:
        super().__init__()
        if not hasattr(backbone, "features") or not hasattr(backbone, "feature_dim"):
            raise TypeError(f"backbone must have .features(x) and .feature_dim, got {type(backbone).__name__}")
        if not (0.0 <= momentum <= 1.0):
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if queue_size < 1 or bn_splits < 1:
            raise ValueError(f"queue_size and bn_splits must be >= 1, got {queue_size!r} and {bn_splits!r}")
        feat = int(backbone.feature_dim)
        _check_moco_size(backbone, feat, hidden_dim or feat, dim, queue_size)
        self.encoder_q = backbone
        if isinstance(getattr(backbone, "classifier", None), nn.Module):
            backbone.classifier.requires_grad_(False)  # unused in pre-training (and by DDP)
        self.head_q = ProjectionHead(feat, hidden_dim or feat, dim)
        self.encoder_k = copy.deepcopy(backbone)
        self.head_k = copy.deepcopy(self.head_q)
        for p in self.key_parameters():
            p.requires_grad_(False)
        self.momentum, self.temperature, self.bn_splits = momentum, temperature, bn_splits
        self.register_buffer("queue", nnf.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def feature_dim(self) -> int:
        return int(self.encoder_q.feature_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The query backbone's features (what kNN, the linear probe and fine-tuning use)."""
        return self.encoder_q.features(x)

    def query_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder_q.parameters()) + list(self.head_q.parameters())

    def key_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder_k.parameters()) + list(self.head_k.parameters())

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key = m * key + (1 - m) * query, for every parameter of encoder and head."""
        for pk, pq in zip(self.key_parameters(), self.query_parameters(), strict=True):
            pk.mul_(self.momentum).add_(pq.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest entries of the queue with `keys` (already gathered from all processes)."""
        n, size = keys.shape[0], self.queue.shape[0]
        if n > size:
            raise ValueError(f"a batch of {n} keys does not fit a queue of {size}")
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n, device=keys.device) + ptr) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + n) % size)

    def _split_bn(self, encoder: nn.Module, head: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Normalised projections of `images`, encoded in `bn_splits` chunks (split BatchNorm)."""
        chunks = torch.chunk(images, min(self.bn_splits, images.shape[0]))
        return nnf.normalize(torch.cat([head(encoder.features(c)) for c in chunks]), dim=1)

    def encode_queries(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised queries, the batch encoded in `bn_splits` chunks in input order."""
        return self._split_bn(self.encoder_q, self.head_q, images)

    @torch.no_grad()
    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised keys, the batch shuffled and encoded in `bn_splits` chunks, returned in input order."""
        perm = torch.randperm(images.shape[0], device=images.device)
        keys = self._split_bn(self.encoder_k, self.head_k, images[perm])
        out = torch.empty_like(keys)
        out[perm] = keys
        return out

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """InfoNCE loss of (query, key) views; updates the key encoder and queue in training mode.

        Returns the loss and {"acc": how often the positive key scores highest}.
        """
        q = self.encode_queries(query)
        if self.training:
            self.momentum_update()
        k = self.encode_keys(key)
        positive = (q * k).sum(dim=1, keepdim=True)
        negative = q @ self.queue.clone().detach().t()
        logits = torch.cat([positive, negative], dim=1) / self.temperature
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        loss = nnf.cross_entropy(logits, target)
        if self.training:
            self.enqueue(gather_all(k))
        acc = (logits.argmax(dim=1) == 0).float().mean().item()
        return loss, {"acc": acc}
