"""The assembled MambaAD: frozen encoder -> MFF_OCE fusion -> HS decoder (spec 1.1).

`forward(images)` takes float RGB in [0, 1], (B, 3, H, W) with H and W multiples of 32, at least
64 (square or not), and returns (enc, dec): three encoder maps (detached) and their three reconstructions,
same shapes, highest resolution first.

The state dict holds everything persistent, the frozen encoder included (so a checkpoint is
self-contained); the normalisation constants and the scan index tables are not in it (they are
rebuilt from the config).
"""

from __future__ import annotations

import torch
from torch import nn

from mambaad_cli.config import ModelConfig
from mambaad_cli.errors import UserError
from mambaad_cli.model.decoder import MambaUPNet
from mambaad_cli.model.encoder import FrozenEncoder
from mambaad_cli.model.fusion import MultiScaleFusion

STRIDE = 32  # encoder stride 16, then the fusion bottleneck halves once more


class MambaAD(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = FrozenEncoder(config.encoder)
        c1, c2, c3 = self.encoder.channels
        self.fusion = MultiScaleFusion((c1, c2, c3))
        dims = [self.fusion.out_channels, c3, c2, c1]
        self.decoder = MambaUPNet(dims, config.decoder)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise UserError(f"MambaAD expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
        H, W = images.shape[-2:]
        if H % STRIDE or W % STRIDE or min(H, W) < 2 * STRIDE:
            # At 32 the bottleneck map is 1x1, where InstanceNorm (LSS local branches) is undefined.
            raise UserError(
                f"image size {H}x{W}: height and width must be multiples of {STRIDE}, at least {2 * STRIDE}"
            )
        enc = self.encoder(images)
        dec = self.decoder(self.fusion(enc))
        return enc, dec

    @staticmethod
    def loss(enc: list[torch.Tensor], dec: list[torch.Tensor], weight: float = 5.0) -> torch.Tensor:
        """weight * sum over scales of mean squared error (spec 4.1: the code's loss, not the cosine)."""
        return weight * sum(torch.mean((e - d) ** 2) for e, d in zip(enc, dec, strict=True))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
