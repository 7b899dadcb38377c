"""genrt.web.server through FastAPI's TestClient, on the real igan-digits manipulator: every endpoint against the
manipulator's own methods, the 4xx answers to bad bodies, the body limit, the static files, and errors that must
not leak (NaN, tracebacks, temporary paths)."""

import json
import urllib.parse
import warnings

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")

import anyio  # noqa: E402  (fastapi's dependency)

from genrt.errors import ArgumentError  # noqa: E402
from genrt.web import create_app  # noqa: E402
from genrt.web.server import DEFAULT_MAX_BODY, STATIC  # noqa: E402
from tests.web.images import decode, encode  # noqa: E402

with warnings.catch_warnings():  # starlette's note that httpx is deprecated in favour of httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BAR = {"tool": "color", "points": [[0.2, 0.5], [0.8, 0.5]], "width": 0.12, "color": [255, 255, 255]}
LINE = {"tool": "sketch", "points": [[0.5, 0.1], [0.5, 0.9]], "width": 0.05}


@pytest.fixture
def client(manipulator):
    with TestClient(create_app(manipulator)) as c:
        yield c


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 60 * 45, dtype=np.float32).reshape(60, 45)
    return np.clip(base[..., None] + rng.normal(0, 20, (60, 45, 3)), 0, 255).astype(np.uint8)  # (60, 45, 3)


def z_of(manipulator, seed: int) -> list[float]:
    return manipulator.sample_latents(1, seed=seed)[0].tolist()


def close(a: np.ndarray, b: np.ndarray, tol: int = 1) -> bool:
    """Equal up to tol levels: the same G(z) can round differently in another batch."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= tol


# -- the endpoints --------------------------------------------------------------------------------------------------


def test_info(client, manipulator):
    info = client.get("/api/info").json()
    assert info == {
        "model": manipulator.name, "image_size": list(manipulator.image_size), "channels": manipulator.channels,
        "latent_dim": manipulator.latent_dim, "k": info["k"], "has_photo": False,
    }  # fmt: skip
    assert 1 <= info["k"] <= 8


def test_start_without_photo_is_a_seeded_sample(client, manipulator):
    first, again = client.get("/api/start").json(), client.get("/api/start").json()
    assert first == again and first["photo"] is None
    z = np.asarray(first["z"], np.float32)
    assert z.shape == (manipulator.latent_dim,) and np.isfinite(z).all()
    h, w = manipulator.image_size
    image = decode(first["image"])
    assert image.shape == (h, w, manipulator.channels)
    assert close(image, manipulator.generate(z[None])[0], tol=0)


def test_start_with_photo_is_its_projection(manipulator, photo):
    with TestClient(create_app(manipulator, photo)) as c:
        start = c.get("/api/start").json()
        assert c.get("/api/info").json()["has_photo"] is True
    z = np.asarray(start["z"], np.float32)
    assert close(decode(start["image"]), manipulator.generate(z[None])[0])
    assert close(decode(start["photo"]), photo, tol=0)
    p = manipulator.project(photo)
    assert p.loss <= manipulator.project(photo, starts=1, steps=0, encoder=False).loss  # a projection, not a sample
    assert close(decode(start["image"]), p.image)


def test_edit_returns_k_candidates_of_the_model(client, manipulator):
    z0 = z_of(manipulator, 1)
    body = {"z0": z0, "strokes": [BAR, LINE], "k": 3, "seed": 7}
    candidates = client.post("/api/edit", json=body).json()["candidates"]
    assert len(candidates) == 3
    direct = manipulator.edit(np.asarray(z0, np.float32), [BAR, LINE], k=3, seed=7)
    h, w = manipulator.image_size
    losses = [c["loss"] for c in candidates]
    assert losses == sorted(losses)
    assert losses == pytest.approx([c.loss for c in direct], rel=1e-4)
    for got, want in zip(candidates, direct, strict=True):
        image = decode(got["image"])
        assert image.shape == (h, w, manipulator.channels)
        assert close(image, want.image)
        assert close(image, manipulator.generate(np.asarray(got["z"], np.float32)[None])[0])
    # The stroke asked for white along the bar: the best candidate is brighter there than G(z0).
    row = slice(int(h * 0.45), int(h * 0.55) + 1)
    before = manipulator.generate(np.asarray(z0, np.float32)[None])[0]
    assert decode(candidates[0]["image"])[row].mean() > before[row].mean()


def test_edit_proximity_keeps_the_edit_nearer_z0(client, manipulator):
    z0 = z_of(manipulator, 1)
    far, near = (
        np.asarray(client.post("/api/edit", json={"z0": z0, "strokes": [BAR], "k": 1, "seed": 7, "proximity": p})
                   .json()["candidates"][0]["z"])
        for p in (0.0, 2.0)
    )  # fmt: skip
    assert np.linalg.norm(near - z0) < np.linalg.norm(far - z0)
    bad = {"z0": z0, "strokes": [BAR], "proximity": -1}
    assert client.post("/api/edit", json=bad).status_code == 422


def test_edit_with_no_strokes_and_the_default_k(client, manipulator):
    candidates = client.post("/api/edit", json={"z0": z_of(manipulator, 2)}).json()["candidates"]
    assert len(candidates) == client.get("/api/info").json()["k"]
    assert all(len(c["z"]) == manipulator.latent_dim for c in candidates)


def test_morph_frames_go_from_z0_to_z1(client, manipulator):
    z0, z1 = z_of(manipulator, 3), z_of(manipulator, 4)
    frames = client.post("/api/morph", json={"z0": z0, "z1": z1, "steps": 5}).json()["frames"]
    assert len(frames) == 5
    images = np.stack([decode(f) for f in frames])
    assert close(images[0], manipulator.generate(np.asarray(z0, np.float32)[None])[0])
    assert close(images[-1], manipulator.generate(np.asarray(z1, np.float32)[None])[0])
    assert close(images, manipulator.morph(np.asarray(z0, np.float32), np.asarray(z1, np.float32), steps=5))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_project_then_transfer(client, manipulator, photo, fmt):
    url = encode(photo, fmt)
    sent = decode(url, png=False)  # JPEG's pixels are not the photo's
    result = client.post("/api/project", json={"image": url}).json()
    assert client.get("/api/info").json()["has_photo"] is True
    assert client.get("/api/start").json() == result  # a reload starts from the uploaded photo
    assert close(decode(result["photo"]), sent, tol=0)
    z0 = result["z"]
    assert close(decode(result["image"]), manipulator.generate(np.asarray(z0, np.float32)[None])[0])
    # No edit: the photo comes back as it was, at its own size.
    same = decode(client.post("/api/transfer", json={"z0": z0, "z1": z0}).json()["image"])
    assert close(same, sent)
    # An edit: what the manipulator's transfer makes of the same pixels.
    z1 = z_of(manipulator, 5)
    edited = decode(client.post("/api/transfer", json={"z0": z0, "z1": z1}).json()["image"])
    want = manipulator.transfer(sent, np.asarray(z0, np.float32), np.asarray(z1, np.float32))
    assert close(edited, want) and edited.shape == photo.shape
    assert not close(edited, sent, tol=8)


def test_project_a_large_grey_photo_previews_it_smaller(client, manipulator):
    big = np.tile(np.linspace(0, 255, 1024, dtype=np.uint8), (600, 1))  # (600, 1024) grey
    result = client.post("/api/project", json={"image": encode(big)}).json()
    assert decode(result["photo"]).shape == (300, 512, 1)
    z0 = result["z"]
    out = decode(client.post("/api/transfer", json={"z0": z0, "z1": z0}).json()["image"])
    assert close(out, big[..., None])


def test_transfer_without_photo_is_409(client, manipulator):
    z = z_of(manipulator, 0)
    r = client.post("/api/transfer", json={"z0": z, "z1": z})
    assert r.status_code == 409 and "photo" in r.json()["detail"]


# -- bad requests ---------------------------------------------------------------------------------------------------


def _bad_edits(d: int):
    z = [0.0] * d
    stroke = dict(BAR)
    return {
        "short z": {"z0": z[:-1]},
        "long z": {"z0": z + [0.0]},
        "string z": {"z0": ["a"] * d},
        "huge z": {"z0": [1e6] * d},
        "no z": {"strokes": []},
        "k 0": {"z0": z, "k": 0},
        "k 9": {"z0": z, "k": 9},
        "k float": {"z0": z, "k": 2.5},
        "65 strokes": {"z0": z, "strokes": [stroke] * 65},
        "513 points": {"z0": z, "strokes": [{**stroke, "points": [[0.5, 0.5]] * 513}]},
        "no points": {"z0": z, "strokes": [{**stroke, "points": []}]},
        "point outside": {"z0": z, "strokes": [{**stroke, "points": [[0.5, 1.5]]}]},
        "3-d point": {"z0": z, "strokes": [{**stroke, "points": [[0.5, 0.5, 0.5]]}]},
        "width 0": {"z0": z, "strokes": [{**stroke, "width": 0}]},
        "width 2": {"z0": z, "strokes": [{**stroke, "width": 2}]},
        "colour 256": {"z0": z, "strokes": [{**stroke, "color": [256, 0, 0]}]},
        "colour rg": {"z0": z, "strokes": [{**stroke, "color": [1, 2]}]},
        "unknown tool": {"z0": z, "strokes": [{**stroke, "tool": "spray"}]},
        "extra key": {"z0": z, "extra": 1},
        "negative seed": {"z0": z, "seed": -1},
    }


@pytest.mark.parametrize("case", list(_bad_edits(1)))
def test_bad_edit_bodies_are_422(client, manipulator, case):
    r = client.post("/api/edit", json=_bad_edits(manipulator.latent_dim)[case])
    assert r.status_code == 422, r.text
    assert all({"loc", "msg", "type"} <= set(e) for e in r.json()["detail"])


def test_wrong_z_length_says_the_length(client, manipulator):
    r = client.post("/api/morph", json={"z0": [0.0] * 3, "z1": [0.0] * manipulator.latent_dim})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "z0"] and str(manipulator.latent_dim) in error["msg"]


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("path", ["/api/edit", "/api/morph", "/api/transfer"])
def test_non_finite_numbers_in_raw_json_are_422(client, manipulator, bad, path):
    d = manipulator.latent_dim
    z = "[" + ", ".join([bad] + ["0.5"] * (d - 1)) + "]"
    body = f'{{"z0": {z}, "z1": {z}}}' if path != "/api/edit" else f'{{"z0": {z}}}'
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "finite" in r.text and bad not in r.text  # NaN cannot go back as JSON: the input is not echoed


def test_non_finite_stroke_values_are_422(client, manipulator):
    z = ", ".join(["0"] * manipulator.latent_dim)
    body = f'{{"z0": [{z}], "strokes": [{{"tool": "color", "points": [[NaN, 0.5]], "width": Infinity}}]}}'
    r = client.post("/api/edit", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert {tuple(e["loc"][-2:]) for e in r.json()["detail"]} >= {("0", "width"), ("0", "0")}


@pytest.mark.parametrize(
    "body",
    ["", "{", "[1, 2]", '"text"', "null", '{"z0": ' + "[" * 10000 + "]" * 10000 + "}", '{"k": ' + "9" * 5000 + "}"],
)
def test_malformed_json_is_4xx(client, body):
    r = client.post("/api/edit", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text


@pytest.mark.parametrize(
    "url, status",
    [
        ("not a data url", 422),
        ("data:text/plain;base64,aGVsbG8=", 422),
        ("data:image/png,rawdata", 422),
        ("data:image/png;base64,@@@@", 400),
        ("data:image/png;base64,", 400),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", 400),  # "hello world"
        ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk", 400),  # truncated
    ],
)
def test_bad_data_urls(client, url, status):
    r = client.post("/api/project", json={"image": url})
    assert r.status_code == status, r.text
    detail = json.dumps(r.json()["detail"])
    assert "/tmp" not in detail and "genrt-edit-" not in detail  # the upload's temporary file is not named
    assert client.get("/api/info").json()["has_photo"] is False


def test_photo_over_the_pixel_limit_is_400(manipulator, photo):
    with TestClient(create_app(manipulator, max_photo_pixels=1000)) as c:
        r = c.post("/api/project", json={"image": encode(photo)})
    assert r.status_code == 400 and "2,700 pixels" in r.json()["detail"] and "1,000" in r.json()["detail"]


def test_oversized_bodies_are_413(manipulator):
    with TestClient(create_app(manipulator)) as c:  # the default limit, from Content-Length
        r = c.post("/api/project", content=b"x" * (DEFAULT_MAX_BODY + 1), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["detail"]
    limit = 10_000
    with TestClient(create_app(manipulator, max_body=limit)) as c:
        prefix = '{"image": "data:image/png;base64,'
        fits = prefix + "A" * (limit - len(prefix) - 2) + '"}'
        assert len(fits) == limit
        assert c.post("/api/project", content=fits, headers={"Content-Type": "application/json"}).status_code == 400

        def chunks():  # no Content-Length: counted while it streams in
            yield prefix.encode()
            for _ in range(20):
                yield b"A" * 1000

        r = c.post("/api/project", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        assert c.get("/api/info").status_code == 200  # the server is fine after


# -- errors inside the manipulator ----------------------------------------------------------------------------------


class _Failing:
    """The manipulator, but morph raises ``error``."""

    def __init__(self, manipulator, error: Exception):
        self._m, self._error = manipulator, error

    def __getattr__(self, name):
        return getattr(self._m, name)

    def morph(self, *args, **kwargs):
        raise self._error


def test_a_genrt_error_is_400_with_its_message(manipulator):
    app = create_app(_Failing(manipulator, ArgumentError("steps: a message for the user")))
    z = z_of(manipulator, 0)
    with TestClient(app) as c:
        r = c.post("/api/morph", json={"z0": z, "z1": z})
    assert r.status_code == 400 and r.json() == {"detail": "steps: a message for the user"}


def test_an_unexpected_error_is_500_without_a_traceback(manipulator, caplog):
    app = create_app(_Failing(manipulator, RuntimeError("secret internals")))
    z = z_of(manipulator, 0)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/api/morph", json={"z0": z, "z1": z})
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text and set(r.json()) == {"detail"}
    assert "secret internals" in caplog.text  # the server's log has it


# -- routes, static files, headers ----------------------------------------------------------------------------------


def test_index_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="canvas"', 'id="generate"', 'id="candidates"', 'id="morph"', 'id="photo-input"'):
        assert element in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert r.text == (STATIC / name).read_text()


def _status_of_raw_path(app, raw_path: str) -> int:
    """The status of GET raw_path sent as it is (an HTTP client would normalise the dots away)."""
    messages = []

    async def go():
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": urllib.parse.unquote(raw_path), "raw_path": raw_path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }  # fmt: skip

        done = anyio.Event()
        requests = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive():  # the request, then a disconnect once the response is sent (Starlette listens for it)
            message = next(requests, None)
            if message is None:
                await done.wait()
                message = {"type": "http.disconnect"}
            return message

        async def send(message):
            messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done.set()

        await app(scope, receive, send)

    anyio.run(go)
    return next(m["status"] for m in messages if m["type"] == "http.response.start")


TRAVERSALS = [
    "/static/../server.py", "/static/../../cli.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
    "/static/%2e%2e%2fserver.py", "/static/%2E%2E%2F__init__.py", "/static/..%5cserver.py", "/static/.%2e/server.py",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/../../../../../../etc/passwd",
]  # fmt: skip


@pytest.mark.parametrize("path", TRAVERSALS)
def test_static_path_traversal_is_404(client, manipulator, path):
    assert (STATIC.parent / "server.py").is_file()  # there is something to find one folder up
    assert _status_of_raw_path(client.app, "/static/app.js") == 200  # and the raw request itself works
    assert _status_of_raw_path(create_app(manipulator), path) == 404
    assert client.get(path).status_code == 404


def test_unknown_routes_and_methods(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/api/nope").json() == {"detail": "Not Found"}
    assert client.get("/api/edit").status_code == 405
    assert client.get("/docs").status_code == 404  # the interactive docs would load a CDN's scripts


def test_openapi_lists_the_api_with_bounds(client, manipulator):
    schema = client.get("/openapi.json").json()
    assert {"/api/info", "/api/start", "/api/project", "/api/edit", "/api/morph", "/api/transfer"} <= set(
        schema["paths"]
    )
    parts = schema["components"]["schemas"]
    z0 = parts["EditRequest"]["properties"]["z0"]
    assert z0["minItems"] == z0["maxItems"] == manipulator.latent_dim
    assert parts["EditRequest"]["properties"]["k"]["maximum"] == 8
    assert parts["EditRequest"]["properties"]["strokes"]["maxItems"] == 64
    assert parts["MorphRequest"]["properties"]["steps"]["minimum"] == 2
    assert parts["StrokeBody"]["properties"]["points"]["maxItems"] == 512


def test_allowed_hosts_refuse_other_host_headers(manipulator):
    with TestClient(create_app(manipulator, allowed_hosts=["127.0.0.1"]), base_url="http://127.0.0.1") as c:
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"Host": "rebound.example"}).status_code == 400
