"""genrt.tiles: tile layout, feathered blending, and tiled runs with whole-image instance-norm statistics, against
the untiled network (ONNX Runtime) and PyTorch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genrt
from genrt import tiles

torch = pytest.importorskip("torch")

from tests.reference_nets import JohnsonTransformer, johnson_init  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 3000), tile=st.integers(16, 700), margin=st.integers(0, 64), multiple=st.sampled_from([1, 4])
)
def test_spans_partition_the_axis(size, tile, margin, multiple):
    if tile - 2 * margin < multiple and size > tile:
        with pytest.raises(genrt.ArgumentError, match="no room"):
            tiles.spans(size, tile, margin, multiple)
        return
    out = tiles.spans(size, tile, margin, multiple)
    assert out[0].cell0 == 0 and out[-1].cell1 == size
    for a, b in zip(out, out[1:], strict=False):
        assert a.cell1 == b.cell0 and a.cell1 % multiple == 0  # cells tile the axis, on the stride grid
    for s in out:
        assert s.cell0 < s.cell1 and s.tile0 == max(0, s.cell0 - margin) and s.tile1 == min(size, s.cell1 + margin)
        assert s.tile1 - s.tile0 <= max(tile, size if len(out) == 1 else 0)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 120), w=st.integers(1, 120), tile=st.integers(8, 64), margin=st.integers(0, 24),
    feather=st.integers(0, 24), multiple=st.sampled_from([1, 2, 4]),
)  # fmt: skip
def test_blend_weights_sum_to_one(h, w, tile, margin, feather, multiple):
    if tile - 2 * margin < multiple:
        return
    x = np.random.default_rng(0).standard_normal((2, 3, h, w)).astype(np.float32)
    kwargs = dict(tile=tile, margin=margin, feather=feather, multiple=multiple)
    np.testing.assert_allclose(tiles.blend(lambda t, _: t, x, **kwargs), x, atol=1e-5)
    up = tiles.blend(lambda t, _: t.repeat(2, 2).repeat(2, 3), x, **kwargs)  # outputs at another scale (upscalers)
    np.testing.assert_allclose(up, x.repeat(2, 2).repeat(2, 3), atol=1e-5)


def test_blend_of_a_local_network_equals_the_whole(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 3, 3, padding=1, padding_mode="reflect"),
    ).eval()
    model = genrt.load(genrt.export(net, tmp_path / "local.onnx", torch.randn(1, 3, 32, 32), kind="model"))
    x = np.random.default_rng(1).standard_normal((1, 3, 90, 75)).astype(np.float32)
    tiler = tiles.Tiler(model)
    assert tiler.instance_norms == 0
    got = tiler({"input_0": x}, "input_0", tile=32, margin=6, feather=2)  # receptive field radius 3
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def johnson(tmp_path_factory):
    # Johnson's architecture (receptive field as in the paper) at a quarter of its width, to keep the test fast.
    net = johnson_init(JohnsonTransformer(width=8))
    path = genrt.export(net, tmp_path_factory.mktemp("tiles") / "t.onnx", torch.randn(1, 3, 64, 64), kind="stylizer")
    return net, genrt.load(path)


def _photo(size):
    skimage = pytest.importorskip("skimage")
    from skimage import transform

    image = transform.resize(skimage.data.astronaut(), (size, size), anti_aliasing=True, order=3)
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32) * 2 - 1)


def test_whole_image_statistics_match_torch(johnson):
    net, model = johnson
    x = _photo(160)
    # The reference: each torch InstanceNorm2d's input, caught by a forward hook, in the order the network runs.
    seen = []
    hooks = [
        m.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].double()))
        for m in net.modules()
        if isinstance(m, torch.nn.InstanceNorm2d)
    ]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    for h in hooks:
        h.remove()
    tiler = tiles.Tiler(model, multiple=4)
    assert tiler.instance_norms == len(seen) == 15  # c9s1, d64, d128, 2 x 5 residual, u64, u32
    # One tile holding the whole image: the parts run in turn, each norm given its exact statistics.
    out, whole = tiler.run({"input_0": x}, "input_0", tile=160, margin=0)
    np.testing.assert_allclose(out, want, atol=2e-4)
    for k, t in enumerate(seen):
        mean, rstd = whole[tiles.stat_names(k)[0]], whole[tiles.stat_names(k)[1]]
        np.testing.assert_allclose(mean, t.mean(dim=(2, 3), keepdim=True).numpy(), rtol=1e-4, atol=1e-5)
        var = t.var(dim=(2, 3), unbiased=False, keepdim=True).numpy()
        np.testing.assert_allclose(rstd, 1 / np.sqrt(var + 1e-5), rtol=1e-3)
    # Tiles whose margin covers the receptive field (radius 57) gather the same statistics.
    _, tiled = tiler.run({"input_0": x}, "input_0", tile=136, margin=60)
    for name, value in tiled.items():
        np.testing.assert_allclose(value, whole[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_tiled_equals_untiled_on_a_1024_photo(johnson):
    """The issue's bound: at most 2 grey levels apart anywhere, 1024x1024 photo, 256-pixel tiles."""
    net, model = johnson
    x = _photo(1024)
    whole = model(x)
    with torch.no_grad():
        np.testing.assert_allclose(whole, net(torch.from_numpy(x)).numpy(), atol=1e-3)
    tiled = tiles.Tiler(model, multiple=4)({"input_0": x}, "input_0", tile=256, margin=64)

    def grey(a):
        return np.clip(np.rint((a + 1) * 127.5), 0, 255)

    diff = np.abs(grey(whole) - grey(tiled))
    assert diff.max() <= 2, (diff.max(), diff.mean())
    # Without whole-image statistics (each tile normalising itself) the same tiles differ far more.
    alone = tiles.blend(lambda t, _: model(np.ascontiguousarray(t)), x, tile=256, margin=64, multiple=4)
    assert np.abs(grey(whole) - grey(alone)).max() > 10


def test_non_local_models_are_refused(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    model = genrt.load(genrt.export(net, tmp_path / "pool.onnx", torch.randn(1, 3, 16, 16), kind="model"))
    with pytest.raises(genrt.ArgumentError, match="cannot run in tiles"):
        tiles.Tiler(model)
    pt2 = genrt.load(genrt.export(net, tmp_path / "pool.pt2", torch.randn(1, 3, 16, 16), kind="model"))
    with pytest.raises(genrt.ArgumentError, match="need an ONNX model"):
        tiles.Tiler(pt2)


def _exported(module, tmp_path, name):
    path = tmp_path / f"{name}.onnx"
    genrt.export(module.eval(), path, torch.rand(1, 3, 32, 32), kind="model", verify=False)
    return genrt.load(path)._runner.graph


def test_receptive_field_of_known_stacks(tmp_path):
    from torch import nn

    # 3x3 (1) + 5x5 dilated by 2 (4): 5 pixels each side, exactly
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 5, padding=4, dilation=2))
    assert tiles.receptive_field(_exported(plain, tmp_path, "plain")) == 5
    # after a stride-2 layer every pixel of the next one spans two input pixels: 1 + 1 * 2
    strided = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 3, 3, padding=1))
    assert tiles.receptive_field(_exported(strided, tmp_path, "strided")) == 3

    class Pooled(nn.Module):  # global pooling sees the whole image: no finite receptive field
        def forward(self, x):
            return x * x.mean(dim=(2, 3), keepdim=True)

    assert tiles.receptive_field(_exported(Pooled(), tmp_path, "pooled")) is None
    # Johnson's stylizer (instance norms count as pointwise; genrt.tiles gives them whole-image statistics)
    johnson = tiles.receptive_field(_exported(johnson_init(JohnsonTransformer(width=4, blocks=1)), tmp_path, "j"))
    # 9x9 (4), 3x3 stride 2 (1), 3x3 stride 2 (1 x 2), one residual block at stride 4 (2 x 4), two stride-2 3x3
    # transposed convs (half a kernel over the stride, plus half a pixel for the rounding: 1 x 4, then 1 x 2), 9x9 (4)
    assert johnson == 4 + 1 + 2 + 8 + 4 + 2 + 4
