"""Hostile model files: bundles that inflate without bound, malformed metadata, broken caches and shapes that would
need more memory than the machine has are refused with a GenrtError (InvalidModelError, MemoryLimitError), fast and
without the memory they ask for."""

import json
import math
import struct
import subprocess
import sys
import time
import warnings
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import genrt
import genrt.cli
from genrt.errors import ArgumentError, InvalidModelError, MemoryLimitError
from genrt.runtime import bundle, files, fuse, models
from genrt.runtime import metadata as md
from genrt.runtime.torch_backend import _read_metadata

IGAN = files.bundled_models().get("igan-digits")
needs_igan = pytest.mark.skipif(IGAN is None, reason="igan-digits is not bundled in this checkout")


def _onnx(path, props=None, *, op="Relu"):
    """x (n, 3, h, w) -> op -> y, with metadata_props {key: raw text} as given (no encoding: the file may lie)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node(op, ["x"], ["y"])] if op == "Relu" else [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Concat", ["a", "x"], ["y"], axis=1),  # (n, 6, h, w)
    ]  # fmt: skip
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def _igan_members():
    with zipfile.ZipFile(IGAN) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        return manifest, {name: zf.read(name) for name in manifest["graphs"].values()}


def _bundle(path, manifest, members, *, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("manifest.json", manifest if isinstance(manifest, str) else json.dumps(manifest))
        for name, blob in members.items():
            zf.writestr(name, blob)
    return path


def _zero_member(zf, name, size):
    """Streams `size` zero bytes into member `name` (deflated: the file stays a few MB)."""
    chunk = bytes(1 << 24)
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as out:
        for start in range(0, size, len(chunk)):
            out.write(chunk[: min(len(chunk), size - start)])


# --- finding 3: bundles -----------------------------------------------------------------------------------------

_PEAK = """
import resource, sys
import genrt
try:
    genrt.load(sys.argv[1])
    print("LOADED")
except genrt.InvalidModelError as exc:
    print("REFUSED", exc)
# VmHWM: this process's own peak (ru_maxrss carries the forking parent's over execve: a big pytest inflates it).
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("PEAK", int(hwm[0].split()[1]) * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _load_in_child(path, env=None):
    import os

    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    peak = int(out.stdout.split("PEAK")[-1])
    return out.stdout, peak


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """igan-digits with its edit graph replaced by 2 GiB of zeros (a few MB deflated)."""
    manifest, members = _igan_members()
    path = tmp_path_factory.mktemp("bomb") / "bomb.genrt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, blob in members.items():
            if name != "edit.onnx":
                zf.writestr(name, blob)
        _zero_member(zf, "edit.onnx", 1 << 31)
    assert path.stat().st_size < 8 << 20
    return path


@needs_igan
@pytest.mark.parametrize("env", [{}, {"GENRT_MAX_BUNDLE_BYTES": "4G"}], ids=["default", "raised-total"])
def test_a_2gib_zero_member_is_refused_from_the_directory_with_bounded_memory(bomb, env):
    path = bomb
    out, peak = _load_in_child(path, env)
    assert "REFUSED" in out and str(path) in out and "edit.onnx" in out, out
    # the limit it hit: the total by default; with the total raised, the member limit or the compression ratio
    assert ("over the" in out) or ("ratio" in out), out
    assert peak < 800 << 20, f"peak RSS {peak / 2**20:.0f} MiB while refusing a 2 GiB member"


@needs_igan
def test_compression_ratio_limit_and_small_members_are_free(tmp_path):
    manifest, members = _igan_members()
    path = tmp_path / "zeros.genrt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, blob in members.items():
            if name != "encoder.onnx":
                zf.writestr(name, blob)
        _zero_member(zf, "encoder.onnx", 64 << 20)  # 64 MiB: under every size limit, ~1000:1
    with pytest.raises(InvalidModelError, match=r"zeros\.genrt: member 'encoder\.onnx' inflates .* ratio over 100:1"):
        genrt.load(path)
    # the manifest (a small JSON) compresses far better than 100:1 when padded, and is still read
    padded = json.dumps({**manifest, "padding": " " * 500_000})
    ok = _bundle(tmp_path / "ok.genrt", padded, members)
    info = zipfile.ZipFile(ok).getinfo("manifest.json")
    assert info.file_size > 100 * info.compress_size
    assert genrt.load(ok).kind == "manipulator"


@needs_igan
def test_a_total_over_the_limit_is_refused_before_inflating(tmp_path, monkeypatch):
    manifest, members = _igan_members()
    path = _bundle(tmp_path / "m.genrt", manifest, members)
    total = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    monkeypatch.setenv("GENRT_MAX_BUNDLE_BYTES", str(total - 1))
    read = []
    real_read = bundle._read

    def counting_read(zf, p, info, limit):
        read.append(info.filename)
        return real_read(zf, p, info, limit)

    monkeypatch.setattr(bundle, "_read", counting_read)
    with pytest.raises(InvalidModelError, match=r"m\.genrt: its members come to more than .* GENRT_MAX_BUNDLE_BYTES"):
        genrt.load(path)
    assert read == ["manifest.json"]  # no graph inflated
    monkeypatch.setenv("GENRT_MAX_BUNDLE_BYTES", str(total))
    assert genrt.load(path).kind == "manipulator"
    monkeypatch.setenv("GENRT_MAX_BUNDLE_BYTES", "lots")
    with pytest.raises(ArgumentError, match="GENRT_MAX_BUNDLE_BYTES"):
        genrt.load(path)


@needs_igan
def test_graphs_naming_one_member_are_refused(tmp_path):
    manifest, members = _igan_members()
    shared = {**manifest, "graphs": {role: "edit.onnx" for role in manifest["graphs"]}}
    with pytest.raises(InvalidModelError, match=r"s\.genrt: member 'edit\.onnx' is named for graphs"):
        genrt.load(_bundle(tmp_path / "s.genrt", shared, members))
    selfref = {**manifest, "graphs": {**manifest["graphs"], "edit": "manifest.json"}}
    with pytest.raises(InvalidModelError, match="names itself"):
        genrt.load(_bundle(tmp_path / "t.genrt", selfref, members))


def _patch_directory_size(path, name: str, size: int) -> None:
    """Rewrites `name`'s uncompressed size in the zip's central directory (and its local header)."""
    data = bytearray(path.read_bytes())
    for sig, size_at, name_len_at, name_at in ((b"PK\x01\x02", 24, 28, 46), (b"PK\x03\x04", 22, 26, 30)):
        at = data.find(sig)
        while at >= 0:
            (n,) = struct.unpack_from("<H", data, at + name_len_at)
            if data[at + name_at : at + name_at + n] == name.encode():
                struct.pack_into("<I", data, at + size_at, size)
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))


@needs_igan
@pytest.mark.parametrize("factor", [0.25, 4.0])
def test_a_directory_lying_about_a_member_size_is_refused(tmp_path, factor):
    manifest, members = _igan_members()
    path = _bundle(tmp_path / "lie.genrt", manifest, members)
    _patch_directory_size(path, "projection.onnx", int(len(members["projection.onnx"]) * factor))
    with pytest.raises(InvalidModelError, match=r"lie\.genrt: member 'projection\.onnx'"):
        genrt.load(path)


@needs_igan
def test_inflation_past_the_directory_stops_at_the_limit(tmp_path, monkeypatch):
    """Never trust the header: a stream that inflates past what the directory declares is cut at the limit."""
    manifest, members = _igan_members()
    path = _bundle(tmp_path / "m.genrt", manifest, members)
    pulled = []

    class Endless:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n=-1):
            n = 1 << 20 if n is None or n < 0 else n
            pulled.append(n)
            if sum(pulled) > 1 << 30:
                raise AssertionError("read a gigabyte from one member")
            return bytes(n)

    real_open = zipfile.ZipFile.open

    def lying_open(self, name, *args, **kwargs):
        info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        return Endless() if info.filename == "edit.onnx" else real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", lying_open)
    with pytest.raises(InvalidModelError, match=r"m\.genrt: member 'edit\.onnx' inflates to more than"):
        genrt.load(path)
    declared = zipfile.ZipFile(path).getinfo("edit.onnx").file_size
    assert sum(pulled) <= declared + 1


# --- finding 8: metadata ----------------------------------------------------------------------------------------


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def test_json_depth_matches_json_itself():
    rng = np.random.default_rng(0)
    tricky = ['a"[{', "\\", "]]}", '\\"[', "x"]

    def build(level):
        if level == 0 or rng.random() < 0.3:
            return tricky[int(rng.integers(len(tricky)))]
        items = [build(level - 1) for _ in range(int(rng.integers(0, 4)))]
        return items if rng.random() < 0.5 else {str(i) + "[": v for i, v in enumerate(items)}

    def depth(v):
        if isinstance(v, list | dict):
            return 1 + max(map(depth, v.values() if isinstance(v, dict) else v), default=0)
        return 0

    for _ in range(300):
        value = build(int(rng.integers(0, 8)))
        assert md.json_depth(json.dumps(value), 1000) == depth(value)
    assert md.json_depth(_deep(100_000), 32) == 33  # stops counting past the limit


BAD_VALUES = [
    ("genrt.kind", '["generator"]'),
    ("genrt.kind", "{}"),
    ("genrt.scale", '"abc"'),
    ("genrt.scale", "abc"),  # not JSON at all: kept as text, still not a number
    ("genrt.scale", "[4]"),
    ("genrt.scale", "-4"),
    ("genrt.scale", "0"),
    ("genrt.scale", "65"),
    ("genrt.scale", "2.5"),
    ("genrt.scale", "true"),
    ("genrt.input_range", "[1.0, 0.0]"),
    ("genrt.input_range", "[NaN, 1.0]"),
    ("genrt.output_range", "[0.0, Infinity]"),
    ("genrt.output_range", "[0.0]"),
    ("genrt.output_range", '[0, "1"]'),
    ("genrt.styles", '["a", 3]'),
    ("genrt.styles", '"a"'),
    ("genrt.multiple", "0"),
    ("genrt.size", "-32"),
    ("genrt.channels", "7"),
    ("genrt.image_size", "[0, 8]"),
    ("genrt.image_size", "[8]"),
    ("genrt.latent_dim", '"16"'),
    ("genrt.latent_shape", "[100, -1, 1]"),
    ("genrt.latent_prior", '"cauchy"'),
    ("genrt.codes", '{"noise": 62, "continuous": 2}'),
    ("genrt.hidden", "0"),
    ("genrt.config", "[1, 2]"),
    ("genrt.description", "[1]"),
    ("genrt.version", "1"),
    ("genrt.classes", "[[1]]"),
    ("genrt.image_shape", "[1, 32]"),
    ("genrt.feature_weight", "-1"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_malformed_metadata_is_an_invalid_model_error_naming_the_key(tmp_path, capsys, key, value):
    kind = {"genrt.scale": "upscaler", "genrt.styles": "stylizer", "genrt.size": "inpainter"}.get(key, "model")
    props = {"genrt.kind": json.dumps(kind), key: value}
    path = _onnx(tmp_path / "m.onnx", props)
    with pytest.raises(InvalidModelError, match=rf"m\.onnx: metadata {key.replace('.', '[.]')} must be"):
        genrt.load(path)
    assert genrt.cli.main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and key in err and "Traceback" not in err


def test_valid_metadata_loads_and_unknown_keys_are_kept(tmp_path):
    props = {
        "genrt.kind": '"upscaler"', "genrt.scale": "4", "genrt.input_range": "[0, 1]",
        "genrt.output_range": "[-1.0, 1.0]", "genrt.my_key": '{"anything": [1, "x", null]}', "genrt.raw": "not json",
        "other": "ignored",
    }  # fmt: skip
    m = genrt.load(_onnx(tmp_path / "m.onnx", props))
    assert m.scale == 4 and m.metadata["my_key"] == {"anything": [1, "x", None]} and m.metadata["raw"] == "not json"
    odd = genrt.load(_onnx(tmp_path / "k.onnx", {"genrt.kind": '"spaceship"'}))  # unknown kinds load as Model
    assert type(odd) is genrt.runtime.Model and odd.kind == "spaceship"


def test_deeply_nested_onnx_metadata_is_refused_before_parsing(tmp_path, monkeypatch):
    path = _onnx(tmp_path / "deep.onnx", {"genrt.kind": '"model"', "genrt.config": '{"a": ' + _deep(100_000) + "}"})
    parsed = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda text, *a, **k: parsed.append(len(text)) or real(text, *a, **k))
    with pytest.raises(InvalidModelError, match=r"deep\.onnx: metadata 'genrt\.config' nests more than 32 levels"):
        genrt.load(path)
    assert all(n < 1000 for n in parsed)  # the deep value never reached json.loads
    # 32 levels are fine (a raw string with brackets is not JSON and is kept as text)
    ok = _onnx(tmp_path / "ok.onnx", {"genrt.config": '{"a": ' + _deep(31) + "}", "genrt.note": "[[[["})
    assert genrt.load(ok).metadata["note"] == "[[[["


def test_oversized_metadata_is_refused(tmp_path):
    big = json.dumps("x" * (md.MAX_VALUE_CHARS + 1))
    with pytest.raises(InvalidModelError, match=r"big\.onnx: metadata 'genrt\.description' is .* over the limit"):
        genrt.load(_onnx(tmp_path / "big.onnx", {"genrt.description": big}))


@needs_igan
def test_deeply_nested_or_malformed_manifest_is_refused(tmp_path):
    manifest, members = _igan_members()
    text = json.dumps(manifest)[:-1] + ', "config2": ' + _deep(100_000) + "}"
    with pytest.raises(InvalidModelError, match=r"d\.genrt: member 'manifest\.json' nests more than"):
        genrt.load(_bundle(tmp_path / "d.genrt", text, members))
    with pytest.raises(InvalidModelError, match=r"d\.genrt: member 'manifest\.json' nests more than"):
        bundle.read_manifest(tmp_path / "d.genrt")
    for key, value in (("latent_dim", "16"), ("image_shape", [1, 0, 32]), ("kind", ["manipulator"])):
        sub = tmp_path / key
        sub.mkdir()
        with pytest.raises(InvalidModelError, match=r"manifest\.json|no \"kind\""):
            genrt.load(_bundle(sub / "m.genrt", {**manifest, key: value}, members))


def test_torch_metadata_json_is_checked(tmp_path):
    pt2 = tmp_path / "m.pt2"
    with pytest.raises(InvalidModelError, match="nests more than"):
        _read_metadata(pt2, '{"kind": "generator", "config": ' + _deep(100_000) + "}")
    with pytest.raises(InvalidModelError, match=r"m\.pt2: metadata kind must be a string"):
        _read_metadata(pt2, '{"kind": ["generator"]}')
    with pytest.raises(InvalidModelError, match=r"metadata io must be"):
        _read_metadata(pt2, '{"kind": "generator", "io": {"inputs": [{"name": "z", "shape": [1], "dtype": "x"}]}}')
    with pytest.raises(InvalidModelError, match="must be a JSON object"):
        _read_metadata(pt2, "[1, 2]")
    (tmp_path / "m.pt2.json").write_text('{"kind": "upscaler", "scale": -4}')
    with pytest.raises(InvalidModelError, match=r"metadata scale must be a whole number from 1 to 64, got -4"):
        _read_metadata(pt2, "")
    (tmp_path / "m.pt2.json").write_text('{"kind": "upscaler", "scale": 4, "io": {"inputs": []}}')
    assert _read_metadata(pt2, "")["scale"] == 4


# --- finding 11: the cache and memory ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"[1, 2]", b"\x00\xffgarbage", b'{"k": 1, "j": {"x": 2}}', _deep(50_000).encode()]
)
def test_a_malformed_cache_is_ignored_with_one_warning(tmp_path, monkeypatch, content):
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path))
    (tmp_path / "conv_transpose_choice.json").write_bytes(content)
    with pytest.warns(RuntimeWarning, match="ignoring kernel-choice cache") as caught:
        assert fuse._read_cache() == {}
        assert fuse._read_cache() == {}  # the same file: warned once
    assert len([w for w in caught if "kernel-choice cache" in str(w.message)]) == 1


def test_a_cache_keeps_its_good_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path))
    good = {"a": {"genrt": True, "ort_ms": 1.0}, "b": {"genrt": False, "error": "x"}}
    (tmp_path / "conv_transpose_choice.json").write_text(json.dumps({**good, "c": [1], "d": {"genrt": "yes"}}))
    with pytest.warns(RuntimeWarning, match="2 malformed entries"):
        assert fuse._read_cache() == good


@pytest.mark.skipif(genrt.runtime.onnx_session.ort_ops_library() is None, reason="no genrt ORT library")
def test_loading_with_a_list_cache_works_and_rewrites_it(tmp_path, monkeypatch):
    if "dcgan-digits" not in files.bundled_models():
        pytest.skip("dcgan-digits is not bundled")
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GENRT_CONV_TRANSPOSE", raising=False)
    cache = tmp_path / "conv_transpose_choice.json"
    cache.write_text("[1, 2]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = genrt.load("dcgan-digits", threads=1)  # decides its ConvTranspose layers at load: reads and writes
    assert g.sample(2, seed=0).shape == (2, 32, 32, 1)
    assert any("kernel-choice cache" in str(w.message) for w in caught)
    rewritten = json.loads(cache.read_text())
    assert isinstance(rewritten, dict) and rewritten and all("genrt" in v for v in rewritten.values())


def test_memory_estimate_against_the_graph_sizes(tmp_path):
    relu = genrt.load(_onnx(tmp_path / "r.onnx"))
    n = 3 * 40 * 50
    assert relu.memory_estimate((2, 3, 40, 50)) == 2 * (2 * n * 4)  # x, and y: the only tensor after it
    cat = genrt.load(_onnx(tmp_path / "c.onnx", op="Concat"))
    assert cat.memory_estimate((2, 3, 40, 50)) == 2 * n * 4 + 2 * (2 * n * 4) + 2 * n * 4  # x + y (6 ch) + a


def test_memory_limit_refuses_calls_and_prepare_and_can_be_raised(tmp_path, monkeypatch):
    relu = genrt.load(_onnx(tmp_path / "r.onnx"))
    x = np.ones((1, 3, 64, 64), np.float32)  # x and y: 96 KiB
    monkeypatch.setenv("GENRT_MAX_MEMORY", "64K")
    with pytest.raises(
        MemoryLimitError, match=r"need at least 96\.0 KiB .* over the limit of 64\.0 KiB.*GENRT_MAX_MEMORY"
    ):
        relu(x)
    with pytest.raises(MemoryLimitError):
        relu.prepare((1, 3, 64, 64))
    relu.prepare((1, 3, 8, 8))
    monkeypatch.setenv("GENRT_MAX_MEMORY", "1m")
    np.testing.assert_array_equal(relu(x), x)
    monkeypatch.setenv("GENRT_MAX_MEMORY", "a lot")
    with pytest.raises(ArgumentError, match="GENRT_MAX_MEMORY"):
        relu(x)
    assert md.parse_bytes("8G", "x") == 8 << 30 and md.parse_bytes("1.5GiB", "x") == 3 << 29
    assert md.parse_bytes("4096", "x") == 4096 and md.parse_bytes("512 MB", "x") == 512 << 20
    with pytest.raises(ArgumentError):
        md.parse_bytes("-1", "x")


def test_info_with_a_huge_input_shape_answers_fast(monkeypatch, capsys):
    if "style-retina" not in files.bundled_models():
        pytest.skip("style-retina is not bundled")
    monkeypatch.delenv("GENRT_MAX_MEMORY", raising=False)
    if models._default_memory_limit() > 200 << 30:
        pytest.skip("this machine has the memory for it")
    genrt.load("style-retina")  # imports and first-load costs out of the timing
    start = time.perf_counter()
    assert genrt.cli.main(["info", "style-retina", "--input-shape", "1,3,30000,30000"]) == 2
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert elapsed < 3.0, f"took {elapsed:.1f} s"
    assert err.count("\n") == 1 and "GiB of memory" in err and "GENRT_MAX_MEMORY" in err
    estimate = float(err.split("need at least ")[1].split(" GiB")[0])
    assert math.isclose(estimate, (3 + 2 * 32) * 30000**2 * 4 / 2**30, rel_tol=0.3)  # input + two 32-channel maps
    assert genrt.cli.main(["info", "style-retina", "--input-shape", "1,3,64,64"]) == 0


# --- found by tests/fuzz (each a reproducer of what the fuzzer hit) ---------------------------------------------


def _relu_model(path, props: dict[str, str]) -> bytes:
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )  # fmt: skip
    model = helper.make_model(g)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("props", "swap", "error"),
    [
        ({"genrt.kind": '"upscaler"', "genrt.scale": "9" * 5000}, None, "genrt.scale must be a whole number"),
        ({"genrt.kind": '"vae"', "genrt.note": '"abcd"'}, (b'"abcd"', b'"\xf9bcd"'), "not UTF-8"),
        ({"genrt.kind": '"vae"', "genrt.zzzz": "1"}, (b"genrt.zzzz", b"genr\xab.zzzz"), None),  # a key: ignored
    ],
)
def test_metadata_that_is_not_text_or_has_huge_numbers(tmp_path, props, swap, error):
    data = _relu_model(tmp_path, props)
    if swap:
        data = data.replace(*swap)
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    if error is None:
        assert genrt.load(path).kind == "vae"
    else:
        with pytest.raises(InvalidModelError, match=error):
            genrt.load(path)


def test_an_input_dimension_named_in_bytes_that_are_not_utf8(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "QQ"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "QQ"])],
    )  # fmt: skip
    (tmp_path / "m.onnx").write_bytes(helper.make_model(g).SerializeToString().replace(b"QQ", b"\x80Q"))
    with pytest.raises(InvalidModelError, match="not UTF-8"):
        genrt.load(tmp_path / "m.onnx")


def test_a_property_of_a_missing_key_says_so(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(_relu_model(tmp_path, {"genrt.kind": '"inpainter"'}))  # no genrt.size
    with pytest.raises(genrt.ModelKindError, match="needs metadata 'size'"):
        genrt.load(path).size  # noqa: B018


def test_a_model_onnxruntime_refuses_prints_nothing(tmp_path, capfd):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("NoSuchOpZ", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    # Invalid UTF-8 in ORT's error message: onnxruntime's own session would print an "EP Error" banner and retry.
    (tmp_path / "m.onnx").write_bytes(helper.make_model(g).SerializeToString().replace(b"OpZ", b"Op\xc3"))
    with pytest.raises(InvalidModelError, match="onnxruntime cannot load this model"):
        genrt.load(tmp_path / "m.onnx")
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err and out == ""
