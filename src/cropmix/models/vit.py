"""A small Vision Transformer built from reusable parts (`PatchEmbed`, `Block`).

`VisionTransformer.forward_tokens` can keep only some patch tokens (`keep`), so an MAE
encoder reuses it as is; `Block` serves an MAE decoder too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> linear embedding: (B, C, H, W) -> (B, L, D), L = (H/p)(W/p)."""

    def __init__(
        self, img_size: int | tuple[int, int] = 32, patch_size: int = 4, in_channels: int = 3, dim: int = 192
    ) -> None:
        super().__init__()
        h, w = _pair(img_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"the image size {h}x{w} must be a multiple of the patch size {patch_size} (patch_size)")
        self.img_size = (h, w)
        self.patch_size = patch_size
        self.grid = (h // patch_size, w // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"expected images of size {self.img_size}, got {tuple(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with fused QKV and PyTorch's scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_pos_embed_2d(grid: tuple[int, int], dim: int) -> Tensor:
    """Fixed 2-D sine-cosine position embedding (L, dim): half the channels encode rows, half columns."""
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4 for a 2-D sin-cos embedding, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], dtype=torch.float64), torch.arange(grid[1], dtype=torch.float64), indexing="ij"
    )
    parts = []
    for pos in (rows.flatten(), cols.flatten()):
        angles = pos[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


class VisionTransformer(nn.Module):
    """ViT backbone: images (already normalised) -> pooled features (B, dim).

    pool="cls" uses a class token, pool="mean" averages the patch tokens. Position
    embeddings start as 2-D sin-cos and are learned unless `learn_pos=False`.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        pool: str = "cls",
        learn_pos: bool = True,
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.pool = pool
        self.patch_embed = PatchEmbed(img_size, patch_size, in_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_pos_embed_2d(self.patch_embed.grid, dim).unsqueeze(0)
        self.pos_embed = nn.Parameter(pos, requires_grad=learn_pos)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.feature_dim = dim
        self.num_prefix_tokens = 1
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_tokens(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Normalised tokens (B, 1 + L, dim), the class token first.

        keep: optional (B, L_keep) indices of the patch tokens to keep (after position
        embedding), as an MAE encoder needs; then L = L_keep.
        """
        tokens = self.patch_embed(x) + self.pos_embed
        if keep is not None:
            if keep.dim() != 2 or keep.shape[0] != tokens.shape[0]:
                raise ValueError(f"keep must be (B, L_keep) indices with B={tokens.shape[0]}, got {tuple(keep.shape)}")
            tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.forward_tokens(x)
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)


def vit_tiny(img_size: int = 32, in_channels: int = 3, **kwargs: object) -> VisionTransformer:
    """ViT for small images: patch 4 (patch 16 at 224 and above), dim 192, depth 6, 3 heads."""
    config: dict = {"patch_size": 4 if img_size < 128 else 16, "dim": 192, "depth": 6, "num_heads": 3}
    config.update(kwargs)
    return VisionTransformer(img_size=img_size, in_channels=in_channels, **config)


__all__ = ["Attention", "Block", "PatchEmbed", "VisionTransformer", "sincos_pos_embed_2d", "vit_tiny"]
