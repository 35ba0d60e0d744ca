"""The point renderer: projection per view, z-buffer, splat size, labels, and the render command."""

from __future__ import annotations

import numpy as np
import pytest

from imcodec.errors import UsageError
from imcodec.io.ply import write_ply
from imcodec.render import compose, point_spacing, render_clouds, splat
from imcodec.types import PointCloud

WHITE = np.array([255, 255, 255], np.uint8)


def _square(z: float, x0: int, x1: int, color, step: int = 1) -> PointCloud:
    """A filled axis-aligned square in the plane z = const, x and y in [x0, x1]."""
    g = np.arange(x0, x1 + 1, step, dtype=np.float64)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = np.column_stack([xx.ravel(), yy.ravel(), np.full(xx.size, z)])
    return PointCloud(points=pts, colors=np.tile(np.asarray(color, np.uint8), (len(pts), 1)))


def _merge(*clouds: PointCloud) -> PointCloud:
    return PointCloud(points=np.vstack([c.points for c in clouds]), colors=np.vstack([c.colors for c in clouds]))


def test_splat_z_buffer_against_brute_force(rng):
    n, h, w, k = 300, 20, 30, 2
    px = rng.integers(-2, w, n)
    py = rng.integers(-2, h, n)
    depth = rng.integers(0, 5, n).astype(np.float64)  # many ties
    zbuf, owner = splat(px, py, depth, k, h, w)
    for y in range(h):
        for x in range(w):
            cover = [i for i in range(n) if px[i] <= x < px[i] + k and py[i] <= y < py[i] + k]
            if not cover:
                assert owner[y, x] == -1 and zbuf[y, x] == -np.inf
                continue
            best = max(depth[i] for i in cover)
            assert zbuf[y, x] == best
            assert owner[y, x] == min(i for i in cover if depth[i] == best)


def test_nearer_surface_wins_in_front_and_back_views():
    far = _square(0.0, 0, 40, (255, 0, 0))     # red at z = 0
    near = _square(10.0, 10, 30, (0, 0, 255))  # blue at z = 10, smaller
    cloud = _merge(far, near)
    front, back = (render_clouds([cloud], view=v, size=64, crop=False)[0] for v in ("front", "back"))
    c = 32
    assert tuple(front[c, c]) == (0, 0, 255)   # the viewer on +z sees blue in the middle
    assert tuple(back[c, c]) == (255, 0, 0)    # the viewer on -z sees the red square
    assert tuple(front[4, 4]) == (255, 0, 0)   # red around the blue square


def test_view_orientation():
    # a grey base square in z = 0, a green marker beyond it at +x and a blue one beyond it at +y
    base = _square(0.0, 0, 40, (128, 128, 128))
    mx = PointCloud(points=np.array([[48.0, 20.0, 1.0]]), colors=np.array([[0, 255, 0]], np.uint8))
    my = PointCloud(points=np.array([[20.0, 48.0, 1.0]]), colors=np.array([[0, 0, 255]], np.uint8))
    cloud = _merge(base, mx, my)

    def where(img, color):
        ys, xs = np.nonzero(np.all(img == np.asarray(color, np.uint8), axis=2))
        assert len(xs), f"colour {color} not in the picture"
        return xs.mean() / img.shape[1], ys.mean() / img.shape[0]

    pics = {v: render_clouds([cloud], v, size=100, point_size=3, crop=False)[0] for v in ("front", "back", "top")}
    gx, gy = where(pics["front"], (0, 255, 0))
    bx, by = where(pics["front"], (0, 0, 255))
    assert gx > 0.9 and abs(gy - 0.56) < 0.1   # +x on the right, +y up
    assert by < 0.1 and abs(bx - 0.44) < 0.1
    gx, _ = where(pics["back"], (0, 255, 0))
    _, by = where(pics["back"], (0, 0, 255))
    assert gx < 0.1 and by < 0.1               # from behind: +x on the left, +y still up
    gx, _ = where(pics["top"], (0, 255, 0))
    assert gx > 0.9                            # from above: +x on the right


def test_spacing_and_closed_surface():
    sparse = _square(0.0, 0, 64, (0, 200, 0), step=8)  # an 8-voxel grid
    assert point_spacing(sparse.points) == pytest.approx(8.0)
    img = render_clouds([sparse], "front", size=128, crop=False)[0]
    # splats of the spacing's size close the surface: the inside of the square has no background pixel
    inner = img[20:108, 20:108]
    assert not np.any(np.all(inner == WHITE, axis=2))
    one = render_clouds([sparse], "front", size=128, point_size=1, crop=False)[0]
    assert np.any(np.all(one[20:108, 20:108] == WHITE, axis=2))  # 1-pixel splats leave holes


def test_geometry_only_is_shaded_and_panels_share_scale():
    big = PointCloud(points=_square(0.0, 0, 40, (0, 0, 0)).points)
    small = PointCloud(points=_square(0.0, 10, 20, (0, 0, 0)).points)
    a, b = render_clouds([big, small], "front", size=80, crop=False)
    assert a.shape == b.shape == (80, 80, 3)
    hit_a = ~np.all(a == WHITE, axis=2)
    hit_b = ~np.all(b == WHITE, axis=2)
    # the same scale: the small square covers about (11/41)^2 of the big one's pixels
    assert hit_b.sum() / hit_a.sum() == pytest.approx((11 / 41) ** 2, rel=0.25)
    grey = a[hit_a]
    assert np.all(grey[:, 0] == grey[:, 1]) and 0 < grey[:, 0].mean() < 255


def test_compose_labels_and_crop():
    p = [np.zeros((50, 30, 3), np.uint8), np.zeros((50, 40, 3), np.uint8)]
    img = compose(p, ["a", "a very long label that cannot fit"], gap=5)
    band = img.shape[0] - 50
    assert img.shape[1] == 30 + 5 + 40 and band > 0
    assert np.any(img[:band, :30] < 128) and np.any(img[:band, 35:] < 128)  # dark text in both bands
    assert np.all(img[band:, 30:35] == 255)  # the gap stays background
    tall = PointCloud(points=np.array([[0.0, 0, 0], [10, 100, 0]]))
    assert render_clouds([tall], "front", size=100)[0].shape[1] < 30  # cropped to the figure


def test_render_errors():
    c = _square(0.0, 0, 4, (1, 2, 3))
    with pytest.raises(UsageError, match="'side'"):
        render_clouds([c], view="side")
    with pytest.raises(UsageError, match="--size"):
        render_clouds([c], size=4)
    with pytest.raises(UsageError, match="--point-size"):
        render_clouds([c], point_size=0)


def test_render_cli(tmp_path, run_cli):
    from PIL import Image

    a, b = tmp_path / "a.ply", tmp_path / "b.ply"
    write_ply(_square(0.0, 0, 30, (200, 10, 10)), a)
    write_ply(PointCloud(points=_square(0.0, 0, 30, (0, 0, 0), step=3).points), b)
    code, _, err = run_cli("render", a, "-o", tmp_path / "one.png", "--size", "64")
    assert code == 0, err
    with Image.open(tmp_path / "one.png") as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    code, out, err = run_cli("render", a, b, "-o", tmp_path / "cmp.png", "--size", "64", "--view", "back",
                             "--label", "orig", "--label", "coarse", "--json")
    assert code == 0, err
    assert '"width": 136' in out
    with Image.open(tmp_path / "cmp.png") as im:
        assert im.size[0] == 64 + 8 + 64 and im.size[1] > 64
    code, _, err = run_cli("render", a, b, "-o", tmp_path / "x.png", "--label", "one")
    assert code == 2 and "--label given 1 times for 2 inputs" in err
    code, _, err = run_cli("render", a, "-o", a)
    assert code == 2 and "overwrite" in err
    code, _, err = run_cli("render", tmp_path / "missing.ply", "-o", tmp_path / "m.png")
    assert code == 1 and "missing.ply" in err
