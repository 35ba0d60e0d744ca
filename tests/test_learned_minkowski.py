"""The torch and MinkowskiEngine backends agree (same output coordinates, relative error <= 1e-4).

Skipped when MinkowskiEngine is not importable (``scripts/build_minkowski.sh`` installs it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imcodec.learned import functional as SF
from imcodec.learned.models import UpsamplerConfig, build_model
from imcodec.learned.sparse import minkowski_available, sparse_tensor

pytestmark = pytest.mark.skipif(not minkowski_available(), reason="MinkowskiEngine is not installed")


def sites(n: int, seed: int, grid: int = 16, batches: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randperm(batches * grid ** 3, generator=gen)[:n]
    b, r = cells // grid ** 3, cells % grid ** 3
    return torch.stack([b, r // grid ** 2, (r // grid) % grid, r % grid], 1).to(torch.int32)


def by_coords(x):
    """(coords, feats) of a sparse tensor sorted by coordinate."""
    c = x.coords.long()
    key = ((c[:, 0] * 4096 + c[:, 1] + 1024) * 4096 + c[:, 2] + 1024) * 4096 + c[:, 3] + 1024
    order = torch.argsort(key)
    return c[order], x.feats[order]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def both(coords, feats):
    return (sparse_tensor(coords, feats, backend="torch"), sparse_tensor(coords, feats, backend="minkowski"))


OPS = {
    "conv3": lambda x, w: SF.conv3d(x, w, kernel_size=3),
    "conv3_dil2": lambda x, w: SF.conv3d(x, w, kernel_size=3, dilation=2),
    "down2": lambda x, w: SF.conv3d_down(x, w, kernel_size=2),
    "down3": lambda x, w: SF.conv3d_down(x, w, kernel_size=3),
    "gen2": lambda x, w: SF.generative_conv_transpose3d(SF.conv3d_down(x, torch.ones(8, 3, 3) / 8, kernel_size=2),
                                                        w, kernel_size=2, stride=2),
    "gen3_s1": lambda x, w: SF.generative_conv_transpose3d(x, w, kernel_size=3, stride=1),
    "gen5_s1": lambda x, w: SF.generative_conv_transpose3d(x, w, kernel_size=5, stride=1),
    "tconv2": lambda x, w: SF.conv_transpose3d(SF.conv3d_down(x, torch.ones(8, 3, 3) / 8, kernel_size=2), w, x,
                                               kernel_size=2),
    "tconv3": lambda x, w: SF.conv_transpose3d(SF.conv3d_down(x, torch.ones(8, 3, 3) / 8, kernel_size=2), w, x,
                                               kernel_size=3),
}
KSIZE = {"conv3": 3, "conv3_dil2": 3, "down2": 2, "down3": 3, "gen2": 2, "gen3_s1": 3, "gen5_s1": 5,
         "tconv2": 2, "tconv3": 3}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_agrees_with_minkowski(name):
    coords = sites(500, seed=len(name))
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(len(coords), 3, generator=gen)
    w0 = torch.randn(KSIZE[name] ** 3, 3, 4, generator=gen)
    results = []
    for x in both(coords, feats):
        f = x.feats.detach().clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        y = OPS[name](x.replace(f), w)
        c, yf = by_coords(y)
        probe = torch.sin(c.sum(1, keepdim=True).float() + torch.arange(4.0))  # depends on coordinates only
        (yf * probe).sum().backward()
        xc, order_in = by_coords(x.replace(torch.arange(len(x), dtype=torch.float32)[:, None]))
        results.append((c, yf.detach(), xc, f.grad[order_in[:, 0].long()], w.grad))
    (c_t, y_t, xc_t, gf_t, gw_t), (c_m, y_m, xc_m, gf_m, gw_m) = results
    assert torch.equal(c_t, c_m), "output coordinates differ"
    assert torch.equal(xc_t, xc_m)
    assert rel_err(y_t, y_m) <= 1e-4
    assert rel_err(gf_t, gf_m) <= 1e-4
    assert rel_err(gw_t, gw_m) <= 1e-4


def test_prune_agrees_with_minkowski():
    coords = sites(300, seed=3)
    feats = torch.randn(len(coords), 2, generator=torch.Generator().manual_seed(4))
    outs = []
    for x in both(coords, feats):
        outs.append(by_coords(SF.prune(x, x.feats[:, 0] > 0)))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])


def test_upsampling_network_agrees_with_minkowski():
    torch.manual_seed(0)
    model = build_model(UpsamplerConfig(factor=4, channels=(8, 16, 16, 16), head_channels=4)).eval()
    coords = sites(1500, seed=9, grid=40, batches=1)
    feats = torch.ones(len(coords), 1)
    outs = []
    with torch.no_grad():
        for x in both(coords, feats):
            outs.append(by_coords(model(x)))
    assert torch.equal(outs[0][0], outs[1][0])
    assert rel_err(outs[0][1], outs[1][1]) <= 1e-4
    assert len(np.unique(outs[0][0].numpy(), axis=0)) == len(outs[0][0])
