"""MFF_OCE: multi-scale feature fusion + one-class embedding bottleneck (spec 1.3, RD4AD style).

Fuses the three encoder scales (c1 @ H/4, c2 @ H/8, c3 @ H/16) into one 2*c3-channel map
at H/32. The spec fixes ResNet-34's (64, 128, 256); here the widths follow the encoder, and
for ResNet-34 the module is exactly the spec's (1,458,304 parameters).
"""

from __future__ import annotations

import torch
from timm.models.resnet import Bottleneck
from torch import nn

from mambaad_cli.model.conv_bias import BiasGradConv2d


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(
        BiasGradConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MultiScaleFusion(nn.Module):
    def __init__(self, channels: list[int] | tuple[int, int, int], blocks: int = 3):
        super().__init__()
        c1, c2, c3 = channels
        self.down1 = conv_bn_relu(c1, c2, 3, stride=2)  # E1 -> E2's grid
        self.proj2 = conv_bn_relu(c2, c2, 1, bias=True)
        self.down2 = conv_bn_relu(c2, c3, 3, stride=2)  # (E1+E2) -> E3's grid
        self.proj3 = conv_bn_relu(c3, c3, 1, bias=True)
        self.mix3 = conv_bn_relu(c3, c3, 1, bias=True)
        self.bottleneck = one_class_embedding(c3, blocks)
        self.out_channels = self.bottleneck[-1].bn3.num_features  # 2*c3 (4*(c3//2) if c3 is odd)
        self._init_weights()

    def _init_weights(self) -> None:
        # Conv weights kaiming (fan_out, relu); conv biases keep PyTorch's default; BN 1/0;
        # the bottlenecks' last BN is not zero-initialised.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        e1, e2, e3 = feats
        f = self.down1(e1) + self.proj2(e2)
        f = self.down2(f) + self.proj3(e3)
        return self.bottleneck(self.mix3(f))


def one_class_embedding(c3: int, blocks: int) -> nn.Sequential:
    """timm Bottlenecks (expansion 4): c3 -> 2*c3 with stride 2, then 2*c3 -> 2*c3."""
    planes = c3 // 2
    out = planes * Bottleneck.expansion
    downsample = nn.Sequential(nn.Conv2d(c3, out, 1, stride=2, bias=False), nn.BatchNorm2d(out))
    layers = [Bottleneck(c3, planes, stride=2, downsample=downsample)]
    layers += [Bottleneck(out, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)
