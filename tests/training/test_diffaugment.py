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
