"""PU-Dense-style geometry upsampling network over sparse tensors.

After Akhtar, Li, Van der Auwera, Li, Chen, "PU-Dense: Sparse Tensor-Based Point Cloud Geometry
Upsampling", IEEE TIP 31, 2022: a fully convolutional U-Net on the voxels of the sparse input with

* an encoder of stride-2 convolutions (tensor strides 1, 2, 4, 8), each coarse level followed by a
  feature-embedding (FE) unit = inception-residual block (IRB) + 3D dilated pyramid block (DPB);
* a decoder of stride-2 transposed convolutions onto the encoder's coordinates with skip
  connections (added features), each followed by a convolution (1x1x1 at the coarse levels by
  default, to keep CPU training affordable; 3^3 at full resolution);
* a final *generative* transposed convolution that proposes every voxel within the kernel of an
  input voxel, followed (as PU-Dense's D1 -> D0 step) by a 3^3 convolution over the proposed voxels
  and a 1x1 classifier giving each an occupancy logit, trained with binary cross-entropy against the
  original cloud (not Chamfer distance);
* at inference the k = factor x (input points) most probable voxels are kept (top-k pruning).

The paper's network has ~13 M parameters (channels 32..256, for a GPU); this one keeps the layout
with slim channels (default 16/32/48/64) so it trains and runs on a laptop CPU. The generative kernel
is 3 (voxels within 1 of an input voxel) for 2x and 4x and 5 for 8x, where the input is sparse
enough that ~20% of the original voxels lie further than 1 from any input voxel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from imcodec.learned import functional as SF
from imcodec.learned.layers import Conv3d, ConvDown, ConvTranspose, GenerativeConvTranspose
from imcodec.learned.sparse import SparseTensor

ARCH = "pudense-slim"
FACTORS = (2, 4, 8)


@dataclass(frozen=True)
class UpsamplerConfig:
    """Architecture of :class:`PUDenseUpsampler` (stored in every weights file)."""

    factor: int = 4
    channels: tuple[int, ...] = (16, 32, 48, 64)  # tensor strides 1, 2, 4, 8
    gen_kernel: int = 0  # 0: 3 for factors 2/4, 5 for 8
    head_channels: int = 16  # hidden channels of the voxel classifier (0: linear logits)
    head_convs: int = 2  # 3^3 convolutions over the candidate voxels before the logits
    dilations: tuple[int, ...] = (1, 2, 4)  # DPB branches
    dec_kernel: int = 1  # kernel of the decoder convolutions at strides >= 2 (3 at stride 1)
    arch: str = field(default=ARCH)

    def __post_init__(self):
        if self.factor not in FACTORS:
            raise ValueError(f"factor must be one of {FACTORS}, got {self.factor}")
        if len(self.channels) < 2 or any(c < 4 or c % 4 for c in self.channels):
            raise ValueError(f"channels must be >= 2 multiples of 4, got {self.channels}")
        if self.gen_kernel not in (0, 2, 3, 5):
            raise ValueError(f"gen_kernel must be 0, 2, 3 or 5, got {self.gen_kernel}")
        if not 0 <= self.head_convs <= 4:
            raise ValueError(f"head_convs must be 0..4, got {self.head_convs}")
        if self.dec_kernel not in (1, 3):
            raise ValueError(f"dec_kernel must be 1 or 3, got {self.dec_kernel}")

    @property
    def kernel(self) -> int:
        return self.gen_kernel or (5 if self.factor >= 8 else 3)

    @property
    def levels(self) -> int:
        return len(self.channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"], d["dilations"] = list(self.channels), list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UpsamplerConfig":
        d = dict(d)
        d["channels"], d["dilations"] = tuple(d["channels"]), tuple(d["dilations"])
        if "head_conv" in d:  # format of the first shipped weights: one optional 3^3 head convolution
            d["head_convs"] = int(bool(d.pop("head_conv")))
        return cls(**d)


class InceptionResidual(nn.Module):
    """IRB: [1x1 -> 3^3 -> 1x1] and [3^3 -> 1x1] branches (c/2 each), concatenated, plus identity."""

    def __init__(self, c: int):
        super().__init__()
        q, h = c // 4, c // 2
        self.a1, self.a2, self.a3 = Conv3d(c, q, 1), Conv3d(q, q, 3), Conv3d(q, h, 1)
        self.b1, self.b2 = Conv3d(c, q, 3), Conv3d(q, h, 1)

    def forward(self, x: SparseTensor) -> SparseTensor:
        a = self.a3(SF.relu(self.a2(SF.relu(self.a1(x)))))
        b = self.b2(SF.relu(self.b1(x)))
        return SF.relu(x.replace(x.feats + torch.cat([a.feats, b.feats], dim=1)))


class DilatedPyramid(nn.Module):
    """3D-DPB: parallel 3^3 convolutions with growing dilation, fused by 1x1, plus identity."""

    def __init__(self, c: int, dilations: tuple[int, ...]):
        super().__init__()
        q = c // 4
        self.branches = nn.ModuleList(Conv3d(c, q, 3, dilation=d) for d in dilations)
        self.fuse = Conv3d(q * len(dilations), c, 1)

    def forward(self, x: SparseTensor) -> SparseTensor:
        ys = [SF.relu(b(x)).feats for b in self.branches]
        y = self.fuse(x.replace(torch.cat(ys, dim=1)))
        return SF.relu(x.replace(x.feats + y.feats))


class FeatureEmbedding(nn.Module):
    """FE unit: IRB followed by DPB."""

    def __init__(self, c: int, dilations: tuple[int, ...]):
        super().__init__()
        self.irb = InceptionResidual(c)
        self.dpb = DilatedPyramid(c, dilations)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self.dpb(self.irb(x))


class PUDenseUpsampler(nn.Module):
    """Occupancy logits of candidate voxels around a sparse voxel cloud.

    forward(x): x has (N, 1) features (ones) at stride 1; returns a SparseTensor at stride 1 whose
    coordinates are the candidate voxels (every voxel within the generative kernel of an input
    voxel) with (M, 1) float logits.
    """

    def __init__(self, config: UpsamplerConfig):
        super().__init__()
        self.config = config
        ch, dil = config.channels, config.dilations
        self.stem = Conv3d(1, ch[0], 3)
        self.downs = nn.ModuleList(ConvDown(ch[i], ch[i + 1], 2) for i in range(len(ch) - 1))
        self.enc = nn.ModuleList(FeatureEmbedding(c, dil) for c in ch[1:])
        self.ups = nn.ModuleList(ConvTranspose(ch[i + 1], ch[i], 2) for i in range(len(ch) - 1))
        self.dec = nn.ModuleList(Conv3d(c, c, 3 if i == 0 else config.dec_kernel) for i, c in enumerate(ch[:-1]))
        hidden = config.head_channels or 1
        self.generate = GenerativeConvTranspose(ch[0], hidden, config.kernel, stride=1)
        n_refine = config.head_convs if config.head_channels else 0
        self.refine = nn.ModuleList(Conv3d(hidden, hidden, 3) for _ in range(n_refine))
        self.classify = nn.Linear(hidden, 1) if config.head_channels else None

    def forward(self, x: SparseTensor) -> SparseTensor:
        skips = [SF.relu(self.stem(x))]
        for down, fe in zip(self.downs, self.enc):
            skips.append(fe(SF.relu(down(skips[-1]))))
        y = skips[-1]
        for i in range(len(self.ups) - 1, -1, -1):
            up = SF.relu(self.ups[i](y, skips[i]))
            y = SF.relu(self.dec[i](SF.add(up, skips[i])))
        out = self.generate(y)
        for conv in self.refine:
            out = conv(SF.relu(out))
        if self.classify is not None:
            out = out.replace(self.classify(torch.relu(out.feats)))
        return out


def build_model(config: UpsamplerConfig) -> PUDenseUpsampler:
    if config.arch != ARCH:
        raise ValueError(f"unknown architecture {config.arch!r}; this imcodec knows {ARCH!r}")
    return PUDenseUpsampler(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
