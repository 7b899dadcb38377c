"""The Upscaler kind and `genrt upscale`, on small random-weight super-resolution networks, against PyTorch."""

import threading

import numpy as np
import pytest

import genrt
from genrt.apps.upscale import BoundEngine, Upscaler, psnr_y, sharpness, to_float16
from genrt.cli import main

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from training.superres import SRNet, _Clipped  # noqa: E402


def _random_bn(net, seed=0):
    """Batch norms with non-trivial statistics, so the folded export is tested, and a last layer that is not zero
    (SRNet starts it at zero: bicubic)."""
    g = torch.Generator().manual_seed(seed)
    torch.nn.init.normal_(net.tail[1].weight, 0.0, 0.05, generator=g)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return net.eval()


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory):
    torch.manual_seed(0)
    net = _random_bn(SRNet(4, width=8, blocks=1))
    path = tmp_path_factory.mktemp("sr") / "sr.onnx"
    genrt.export(_Clipped(net), path, torch.rand(1, 3, 24, 20), kind="upscaler", metadata={"scale": 4},
                 input_names=["image"], output_names=["upscaled"])  # fmt: skip
    return net, genrt.load(path)


def _reference(net, image):
    """What the upscaler should give for a uint8/uint16 RGB image: the network in float, clipped, rounded."""
    top = np.iinfo(image.dtype).max
    x = torch.from_numpy(image.astype(np.float32) / top).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return np.rint(y * top).astype(image.dtype)


def _photo(h, w, dtype=np.uint8, seed=0):
    skimage = pytest.importorskip("skimage")
    from skimage import transform

    image = transform.resize(skimage.data.chelsea(), (h, w), anti_aliasing=True)
    top = np.iinfo(dtype).max
    return np.rint(image * top).astype(dtype)


def test_loads_as_an_upscaler(upscaler):
    _, model = upscaler
    assert isinstance(model, Upscaler) and model.kind == "upscaler" and model.scale == 4


def test_receptive_field_bounds_what_one_pixel_changes(upscaler):
    _, model = upscaler
    field = model.receptive_field
    x = np.random.default_rng(0).random((1, 3, 61, 61), dtype=np.float32)
    poked = x.copy()
    poked[0, :, 30, 30] += 0.5
    changed = np.abs(model(poked) - model(x)).max(axis=(0, 1)) > 0
    ys, xs = np.nonzero(changed)
    reach = max(30 * 4 - ys.min(), ys.max() - 30 * 4 - 3, 30 * 4 - xs.min(), xs.max() - 30 * 4 - 3) / 4
    assert reach <= field <= reach + 2  # the analysis is an upper bound, and a tight one


@pytest.mark.parametrize("size", [(32, 32), (23, 37), (41, 19)])
def test_any_size_matches_torch(upscaler, size):
    net, model = upscaler
    photo = _photo(*size)
    out = model.upscale(photo)
    assert out.shape == (size[0] * 4, size[1] * 4, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - _reference(net, photo)).max() <= 1


@pytest.mark.parametrize("size,tile", [((45, 67), 19), ((45, 67), 24), ((61, 50), 33), ((70, 71), 40)])
def test_tiles_equal_the_whole_image(upscaler, size, tile):
    _, model = upscaler
    photo = _photo(*size)
    whole = model.upscale(photo, tile=0)
    tiled = model.upscale(photo, tile=tile)
    assert np.abs(whole.astype(int) - tiled).max() <= 1
    # a pad short of the receptive field shows seams: the default is what makes tiles seamless
    assert np.abs(whole.astype(int) - model.upscale(photo, tile=tile, tile_pad=1)).max() > 1


def test_large_inputs_tile_by_default_and_seamlessly(upscaler, monkeypatch):
    _, model = upscaler
    calls = []
    real = genrt.tiles.stitch
    monkeypatch.setattr(genrt.tiles, "stitch", lambda *a, **k: calls.append(k["tile"]) or real(*a, **k))
    photo = _photo(300, 270)  # over 256x256: tiles of 256 by default
    tiled = model.upscale(photo)
    assert calls == [256]
    assert np.abs(tiled.astype(int) - model.upscale(photo, tile=0)).max() <= 1


def test_default_tiles_follow_the_memory_budget(upscaler, monkeypatch):
    """Tiles shrink when a tile's activations would pass TILE_MEMORY, and stay seamless."""
    from genrt.apps import upscale as app

    _, model = upscaler
    per_pixel = model.activation_bytes
    assert 8 * 16 * 4 <= per_pixel <= 8 * 8 * 16 * 4  # 8 channels at 16 output pixels per input pixel, a few times
    pad = model.receptive_field
    assert model.default_tile(200, 200) == 0 and model.default_tile(300, 270) == 256
    monkeypatch.setattr(app, "TILE_MEMORY", int(per_pixel * (96 + 2 * pad) ** 2))  # a 96-pixel tile fits, no more
    assert model.default_tile(200, 200) == 96 and model.default_tile(2000, 2000) == 96
    calls = []
    real = genrt.tiles.stitch
    monkeypatch.setattr(genrt.tiles, "stitch", lambda *a, **k: calls.append(k["tile"]) or real(*a, **k))
    photo = _photo(150, 130)
    tiled = model.upscale(photo)
    assert calls == [96]
    assert np.abs(tiled.astype(int) - model.upscale(photo, tile=0)).max() <= 1
    monkeypatch.setattr(app, "TILE_MEMORY", 1)
    assert model.default_tile(64, 64) == max(32, 2 * pad + 8)


def test_tiles_keep_whole_image_instance_norm_statistics(tmp_path):
    """A user's upscaler with instance norms (whole-image statistics) tiles through genrt.tiles' part runner."""

    class Normed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.norm = torch.nn.InstanceNorm2d(6, affine=True)
            self.up = torch.nn.ConvTranspose2d(6, 3, 4, stride=2, padding=1)

        def forward(self, x):
            return torch.sigmoid(self.up(torch.relu(self.norm(self.conv(x)))))

    path = tmp_path / "normed.onnx"
    genrt.export(Normed().eval(), path, torch.rand(1, 3, 16, 16), kind="upscaler", metadata={"scale": 2})
    model = genrt.load(path)
    photo = _photo(50, 61)
    whole = model.upscale(photo, tile=0)
    assert whole.shape == (100, 122, 3)
    assert np.abs(whole.astype(int) - model.upscale(photo, tile=20)).max() <= 1


def test_tile_arguments_are_checked(upscaler):
    _, model = upscaler
    photo = _photo(40, 40)
    with pytest.raises(genrt.ArgumentError, match="tile"):
        model.upscale(photo, tile=10)  # not more than twice the pad
    with pytest.raises(genrt.ArgumentError, match="tile_pad"):
        model.upscale(photo, tile=30, tile_pad=-1)
    with pytest.raises(genrt.ArgumentError, match="outscale"):
        model.upscale(photo, outscale=0)


def test_alpha_is_upscaled_not_dropped(upscaler):
    net, model = upscaler
    photo = _photo(30, 26)
    alpha = np.zeros((30, 26), np.uint8)
    alpha[5:20, 8:] = 255
    out = model.upscale(np.dstack([photo, alpha]))
    assert out.shape == (120, 104, 4)
    assert np.abs(out[..., :3].astype(int) - _reference(net, photo)).max() <= 1
    np.testing.assert_array_equal(out[..., 3], genrt.image.resize(alpha, (120, 104)))
    pil = model.upscale(Image.fromarray(np.dstack([photo, alpha]), "RGBA"))
    assert pil.mode == "RGBA" and pil.size == (104, 120)


def test_grey_stays_grey(upscaler):
    net, model = upscaler
    grey = _photo(28, 33)[..., 1]
    out = model.upscale(grey)
    assert out.shape == (112, 132) and out.dtype == np.uint8
    rgb = _reference(net, np.repeat(grey[..., None], 3, axis=2)).astype(np.float64) / 255
    expected = np.rint((rgb @ np.array([0.299, 0.587, 0.114])) * 255)
    assert np.abs(out - expected).max() <= 1


def test_sixteen_bit_is_kept(upscaler):
    net, model = upscaler
    photo = _photo(24, 30, np.uint16)
    out = model.upscale(photo)
    assert out.dtype == np.uint16 and out.shape == (96, 120, 3)
    assert np.abs(out.astype(int) - _reference(net, photo)).max() <= 3  # float32 rounding, in 65535 levels
    assert len(np.unique(out)) > 2000  # not 8-bit values stretched


@pytest.mark.parametrize("outscale", [2, 2.5, 3.3, 4, 6])
def test_outscale(upscaler, outscale):
    _, model = upscaler
    photo = _photo(30, 22)
    out = model.upscale(photo, outscale=outscale)
    assert out.shape == (round(30 * outscale), round(22 * outscale), 3)
    native = model.upscale(photo)
    if outscale == 4:
        np.testing.assert_array_equal(out, native)
    else:  # the network's x4 output, resized
        np.testing.assert_array_equal(out, genrt.image.resize(native, out.shape[:2]))


def test_many_threads_share_one_model(upscaler):
    _, model = upscaler
    photos = [_photo(20 + 3 * i, 31 - 2 * i) for i in range(6)]
    expected = [model.upscale(p, tile=24 if i % 2 else 0) for i, p in enumerate(photos)]
    results, errors = {}, []

    def work(k):
        try:
            for i in range(len(photos)):
                j = (i + k) % len(photos)
                results[(k, j)] = model.upscale(photos[j], tile=24 if j % 2 else 0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (_, j), out in results.items():
        np.testing.assert_array_equal(out, expected[j])


def test_bound_engine_reuses_its_buffers(upscaler):
    """The GPU path's I/O binding, run on the CPU: same results as the plain session, one binding per shape."""
    _, model = upscaler
    engine = BoundEngine(model._runner.graph, "cpu", "float32", 1)
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 16, 20), (1, 3, 16, 20), (1, 3, 9, 13)]:
        x = rng.random(shape, dtype=np.float32)
        np.testing.assert_allclose(engine(x), model(x), atol=1e-5)
    assert len(engine._local.buffers) == 2


def test_float16_graph_keeps_float32_io_and_is_close(upscaler):
    _, model = upscaler
    half = to_float16(model._runner.graph)
    assert half.graph.input[0].type.tensor_type.elem_type == 1 and half.graph.output[0].type.tensor_type.elem_type == 1
    assert any(t.data_type == 10 for t in half.graph.initializer)  # FLOAT16 weights
    photo = _photo(24, 24)
    ref = model.upscale(photo, precision="float32")
    out = model.upscale(photo, device="cpu", precision="float16")  # ONNX Runtime's CPU float16 kernels
    assert out.shape == ref.shape and np.abs(out.astype(int) - ref).max() <= 3


def test_float16_graph_runs_like_float32_in_the_onnx_reference(upscaler):
    """The float16 graph computed in float16 for real (ONNX's reference evaluator; ONNX Runtime's CPU provider runs
    float16 nodes in float32), against the float32 graph."""
    from onnx.reference import ReferenceEvaluator

    _, model = upscaler
    half = ReferenceEvaluator(to_float16(model._runner.graph))
    x = np.random.default_rng(0).random((1, 3, 10, 12), dtype=np.float32)
    y = half.run(None, {"image": x})[0]
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert np.abs(y - model(x)).max() < 0.02  # float16 rounding through the layers, a few grey levels


def test_a_tile_that_is_not_finite_is_run_again_in_float32(tmp_path):
    """No black or NaN tiles: a float16 tile whose output is not finite is redone by the float32 engine. ONNX
    Runtime's CPU provider computes float16 graphs in float32, so the overflow is staged: a graph dividing by zero."""

    class Scale2(torch.nn.Module):
        def __init__(self, broken):
            super().__init__()
            self.broken = broken

        def forward(self, x):
            y = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            return y / (y * 0.0) if self.broken else y

    graphs = []
    for broken in (True, False):
        path = tmp_path / f"m{int(broken)}.onnx"
        genrt.export(Scale2(broken), path, torch.rand(1, 3, 8, 8), kind="upscaler", metadata={"scale": 2},
                     verify=False)  # fmt: skip
        graphs.append(genrt.load(path)._runner.graph)
    full = BoundEngine(graphs[1], "cpu", "float32", 1)
    half = BoundEngine(graphs[0], "cpu", "float16", 1, fallback=full)
    x = np.random.default_rng(0).random((1, 3, 4, 4), dtype=np.float32)
    assert not np.isfinite(half._session.run(None, {half._input: x})[0]).all()
    np.testing.assert_array_equal(half(x), full(x))


def test_cuda_without_a_gpu_is_a_clear_error(upscaler):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    _, model = upscaler
    with pytest.raises(genrt.GenrtError, match="CUDA"):
        model.upscale(_photo(16, 16), device="cuda")
    with pytest.raises(genrt.ArgumentError, match="device"):
        model.upscale(_photo(16, 16), device="tpu")


@pytest.mark.cuda
def test_cuda_float16_matches_cpu(upscaler):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu and a GPU")
    _, model = upscaler
    photo = _photo(70, 90)
    ref = model.upscale(photo)
    for precision in ("float16", "float32"):
        out = model.upscale(photo, device="cuda", precision=precision, tile=32)
        assert np.abs(out.astype(int) - ref).max() <= (3 if precision == "float16" else 1)
    on_gpu = genrt.load(model.path, device="cuda")  # loaded on the GPU: float16 by default there too
    assert np.abs(on_gpu.upscale(photo).astype(int) - ref).max() <= 3
    assert ("cuda", "float16") in on_gpu._engines


def test_measures():
    truth = _photo(40, 40)
    assert psnr_y(truth, truth) == float("inf")
    noisy = np.clip(truth + np.random.default_rng(0).normal(0, 5, truth.shape), 0, 255).astype(np.uint8)
    y = lambda a: 16 + a.astype(float) @ (np.array([65.481, 128.553, 24.966]) / 255)  # noqa: E731
    mse = np.mean((y(noisy)[2:-2, 2:-2] - y(truth)[2:-2, 2:-2]) ** 2)
    assert psnr_y(noisy, truth, shave=2) == pytest.approx(10 * np.log10(255**2 / mse))
    blurred = np.asarray(Image.fromarray(truth).resize((10, 10), Image.BICUBIC).resize((40, 40), Image.BICUBIC))
    assert sharpness(blurred, truth) < 0.5 < sharpness(truth, truth) == 1.0 < sharpness(noisy, truth)


# --- the command ----------------------------------------------------------------------------------------------


def test_cli_folder_with_bad_files_resume_outscale(upscaler, tmp_path, capsys):
    _, model = upscaler
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(_photo(20, 24)).save(src / "a.png")
    Image.fromarray(_photo(18, 16)).save(src / "sub" / "b.jpg", quality=95)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    argv = ["upscale", str(model.path), str(src), "-r", "-o", str(out), "--tile", "24"]
    assert main(argv) == 1  # one bad file: reported, the rest done
    err = capsys.readouterr().err
    assert "broken.png" in err and "2 done" in err and "1 failed" in err
    a = np.asarray(Image.open(out / "a-upscaled.png"))
    assert a.shape == (80, 96, 3)
    np.testing.assert_array_equal(a, model.upscale(_photo(20, 24)))  # tiled through the CLI, seamless
    assert Image.open(out / "sub" / "b-upscaled.jpg").size == (64, 72)
    before = (out / "a-upscaled.png").stat().st_mtime_ns
    assert main(argv) == 1  # a rerun skips what is there
    assert (out / "a-upscaled.png").stat().st_mtime_ns == before and "2 skipped" in capsys.readouterr().err
    assert main(["upscale", str(model.path), str(src / "a.png"), "-o", str(tmp_path / "s"), "-s", "2.5",
                 "--ext", "webp", "--suffix=-big"]) == 0  # fmt: skip
    assert Image.open(tmp_path / "s" / "a-big.webp").size == (60, 50)


def test_cli_refuses_bad_arguments(upscaler, tmp_path, capsys):
    _, model = upscaler
    Image.fromarray(_photo(10, 10)).save(tmp_path / "a.png")
    for extra, message in [(["-s", "0"], "outscale"), (["--device", "tpu"], "device")]:
        assert main(["upscale", str(model.path), str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["upscale", "dcgan-digits", str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]) == 2
    assert "not an upscaler" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
