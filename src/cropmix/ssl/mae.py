"""Masked autoencoder (He et al. 2022) at small sizes: ViT encoder on the visible patches, light decoder,
random masking of a fixed ratio, mean-squared error on per-patch normalised pixels of masked patches.

The encoder is `cropmix.models.build_model("vit_tiny", ...)` itself (its `VisionTransformer.forward_tokens`
takes the kept patch indices), with fixed 2-D sine-cosine positions as in MAE, so a pre-trained
encoder loads straight into the same model for fine-tuning (`backbone_state_dict`). The decoder is
made of the same `Block`s. `features(x)` (images in [0, 1]) is the encoder's pooled feature of the
unmasked image (the class token): what kNN and the linear probe use.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cropmix.models import build_model
from cropmix.models.size import block_stack_parameters, check_parameter_count
from cropmix.models.vit import Block, sincos_pos_embed_2d


def random_masking(
    batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator | None = None, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random masks keeping exactly round(num_patches * (1 - mask_ratio)) patches.

    Returns (keep, mask): keep (B, n_keep) patch indices, in increasing order; mask (B, L) float, 1 = masked.
    """
    if not (0.0 <= mask_ratio < 1.0):
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio!r}")
    n_keep = max(1, int(round(num_patches * (1.0 - mask_ratio))))
    noise = torch.rand(batch, num_patches, generator=generator)
    keep = torch.argsort(noise, dim=1)[:, :n_keep].sort(dim=1).values
    mask = torch.ones(batch, num_patches)
    mask.scatter_(1, keep, 0.0)
    if device is not None:
        keep, mask = keep.to(device), mask.to(device)
    return keep, mask


class MAE(nn.Module):
    """A masked autoencoder for small images.

    Args:
        image_size, patch_size: the image is cut into (image_size / patch_size)^2 patches.
        dim, depth, heads: encoder width, number of blocks, attention heads (a "vit_tiny" of that shape).
        decoder_dim, decoder_depth, decoder_heads: the light decoder.
        mask_ratio: fraction of patches masked (0.75 in MAE).
        norm_pix_loss: regress each patch's pixels normalised by that patch's mean and variance.
        num_classes: size of the encoder's (unused here) classifier, kept for fine-tuning.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 192,
        depth: int = 6,
        heads: int = 3,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        in_channels: int = 3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size must be a multiple of patch_size, got {image_size} and {patch_size}")
        if not (0.0 <= mask_ratio < 1.0):
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio!r}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.grid = image_size // patch_size
        self.num_patches = self.grid**2
        decoder = block_stack_parameters(decoder_dim, decoder_depth, tokens=self.num_patches + 1)
        check_parameter_count(decoder, f"the MAE decoder (decoder_dim={decoder_dim}, decoder_depth={decoder_depth})")
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        self.encoder = build_model(
            "vit_tiny",
            num_classes,
            image_size=image_size,
            in_channels=in_channels,
            patch_size=patch_size,
            dim=dim,
            depth=depth,
            num_heads=heads,
            learn_pos=False,
        )
        self.encoder.classifier.requires_grad_(False)  # unused in pre-training (and by DDP)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        pos = sincos_pos_embed_2d((self.grid, self.grid), decoder_dim)
        self.register_buffer("decoder_pos_embed", torch.cat([torch.zeros(1, decoder_dim), pos])[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(Block(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size**2 * in_channels)
        self.feature_dim = dim
        nn.init.normal_(self.mask_token, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), patches in row-major order."""
        b, c = x.shape[:2]
        p, g = self.patch_size, self.grid
        x = x.reshape(b, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, g * g, p * p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of `patchify`."""
        b = patches.shape[0]
        p, g, c = self.patch_size, self.grid, self.in_channels
        x = patches.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, g * p, g * p)

    def encode(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder tokens (class token first) of the patches in `keep` (all when None), after the final norm."""
        return self.encoder.backbone.forward_tokens(self.encoder.normalize(x), keep)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's pooled features of the unmasked image, (B, dim)."""
        return self.encoder.features(x)

    def decode(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of all patches, (B, L, p*p*C), from the class token and visible patches' latents."""
        b = latent.shape[0]
        tokens = self.decoder_embed(latent)
        full = self.mask_token.expand(b, self.num_patches, -1).clone()
        full = full.scatter(1, keep[..., None].expand(-1, -1, full.shape[-1]), tokens[:, 1:])
        full = torch.cat([tokens[:, :1], full], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            full = block(full)
        return self.decoder_pred(self.decoder_norm(full))[:, 1:]

    def loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over masked patches, targets normalised per patch if norm_pix_loss."""
        target = self.patchify(x)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """MAE loss of images x in [0, 1]; returns the loss and {"masked": the masked fraction}."""
        keep, mask = random_masking(x.shape[0], self.num_patches, self.mask_ratio, generator, x.device)
        pred = self.decode(self.encode(x, keep), keep)
        return self.loss(x, pred, mask), {"masked": float(mask.mean().detach())}
