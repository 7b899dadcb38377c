"""training.diffaugment: each policy against a plain numpy construction of what it must produce."""

import numpy as np
import pytest
import torch

from genrt.errors import ArgumentError
from training import diffaugment


def test_translation_is_a_shift_with_fill():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 32, 24)  # values in (0, 1): never equal to the fill
    y = diffaugment.translation(x).numpy()
    assert y.shape == x.shape
    xs = x.numpy()
    seen = set()
    for i in range(len(xs)):
        padded = np.pad(xs[i], ((0, 0), (2, 2), (1, 1)), constant_values=diffaugment.FILL)  # 32/16, 24/16
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(3)
            if np.array_equal(padded[:, dy : dy + 32, dx : dx + 24], y[i])
        ]
        assert len(matches) == 1, i
        seen.add(matches[0])
    assert len(seen) > 5  # offsets differ between images


def test_cutout_blanks_one_half_size_square():
    torch.manual_seed(1)
    x = torch.rand(32, 3, 16, 16)
    y = diffaugment.cutout(x).numpy()
    for i in range(len(y)):
        blank = y[i] == diffaugment.FILL
        assert (blank == blank[0]).all()  # same square on every channel
        rows, cols = np.nonzero(blank[0])
        assert blank[0].sum() == 64 and np.ptp(rows) == 7 and np.ptp(cols) == 7  # one 8x8 square
        np.testing.assert_array_equal(y[i][~blank], x[i].numpy()[~blank])


def test_gradients_flow_to_the_kept_pixels():
    torch.manual_seed(2)
    x = torch.rand(8, 1, 32, 32, requires_grad=True)
    diffaugment.make("translation,cutout")(x).sum().backward()
    g = x.grad.numpy()
    assert set(np.unique(g)) <= {0.0, 1.0}
    kept = g.sum((1, 2, 3))
    assert (kept > 32 * 32 / 2).all() and (kept < 32 * 32).all()  # a quarter cut out, a border shifted out


def test_policies():
    x = torch.rand(2, 1, 8, 8)
    assert diffaugment.make("")(x) is x
    with pytest.raises(ArgumentError, match="diff_augment: unknown policy 'color'"):
        diffaugment.make("translation,color")


def test_warp_is_scipys_affine_transform():
    from scipy import ndimage

    torch.manual_seed(1)
    size = 12
    x = torch.rand(3, 1, size, size) * 2 - 1
    theta = torch.tensor([[[0.9, -0.3, 0.1], [0.25, 1.1, -0.2]]]).repeat(3, 1, 1)
    y = diffaugment.warp(x, theta).numpy()
    # affine_grid works in (x, y) with pixel centres at (2 j + 1) / S - 1: in centred pixel units u = (S / 2) x_n,
    # u_in = A u_out + (S / 2) t. scipy maps output (row, col) to input (row, col): swap the axes.
    a = theta[0, :, :2].numpy()[::-1, ::-1]
    t = theta[0, :, 2].numpy()[::-1] * size / 2
    c = np.full(2, (size - 1) / 2)
    for i in range(3):
        ref = ndimage.affine_transform(
            x[i, 0].numpy() - diffaugment.FILL, a, offset=c - a @ c + t, order=1, mode="grid-constant", cval=0.0
        )
        np.testing.assert_allclose(y[i, 0], ref + diffaugment.FILL, atol=1e-5)


def test_affine_with_no_range_is_the_identity_and_draws_per_image():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)
    torch.testing.assert_close(diffaugment.affine(x, degrees=0, scale=0, shift=0), x, atol=1e-6, rtol=0)
    y = diffaugment.affine(x[:1].repeat(8, 1, 1, 1), degrees=20, scale=0.1, shift=0.1, shear=0.2)
    assert len({tuple(np.round(img.flatten().numpy(), 4)) for img in y}) == 8  # one draw per image


def test_stroke_width_is_grey_dilation_erosion_or_nothing():
    from scipy import ndimage

    torch.manual_seed(0)
    x = torch.rand(40, 1, 8, 8) * 2 - 1
    y = diffaugment.stroke_width(x).numpy()
    kinds = set()
    for i in range(len(x)):
        img = x[i, 0].numpy()
        options = {
            "thick": ndimage.grey_dilation(img, size=3, mode="constant", cval=-np.inf),
            "thin": ndimage.grey_erosion(img, size=3, mode="constant", cval=np.inf),
            "same": img,
        }
        hit = [k for k, ref in options.items() if np.allclose(y[i, 0], ref)]
        assert len(hit) == 1, i
        kinds.add(hit[0])
    assert kinds == {"thick", "thin", "same"}


def test_cutout_square_blanks_one_square_of_the_ratio():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 10, 10)
    y = diffaugment.cutout_square(x, 0.3)
    blank = (y == diffaugment.FILL).squeeze(1).numpy()
    assert (blank.sum((1, 2)) == 9).all()  # 3 x 3 squares
    assert torch.equal(y[y != diffaugment.FILL], x[y != diffaugment.FILL])
