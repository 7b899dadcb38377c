"""The web editor's server: a JSON API over a Manipulator, and the page in genrt/web/static/.

genrt edit igan-digits photo.png --port 8765

Images travel as PNG data URLs (``data:image/png;base64,...``), latents as lists of floats:

    GET  /api/info      {"model", "image_size": [H, W], "channels", "latent_dim", "k", "has_photo"}
    GET  /api/start     {"z", "image", "photo"}: the projection of the current photo (the one given to create_app,
                        or the last one uploaded), else G of a seeded random latent ("photo" null)
    POST /api/project   {"image": a data URL}: projects the photo, which becomes the current photo -> as /api/start
    POST /api/edit      {"z0", "strokes", "k", "seed"} -> {"candidates": [{"z", "image", "loss"}, ...]}, best first
    POST /api/morph     {"z0", "z1", "steps"} -> {"frames": [...]}: G along the line from z0 to z1, ends included
    POST /api/transfer  {"z0", "z1"} -> {"image"}: the edit carried onto the current photo at its full resolution;
                        409 when there is no photo

A genrt error is a 400 with its message, a body the schema refuses a 422, one over ``max_body`` bytes a 413
(from Content-Length, and counted while it streams in); anything else a 500 with a generic message, the traceback
in the server's log only. This module imports fastapi: ``import genrt`` never does (genrt.web does, on demand).
"""

import base64
import binascii
import ipaddress
import logging
import math
import re
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

import genrt
from genrt import image as gimage
from genrt.apps.manipulate import PROXIMITY
from genrt.errors import ArgumentError, GenrtError, InvalidImageError

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # bytes of a request body (an uploaded photo is 4/3 larger in base64)
DEFAULT_MAX_PHOTO_PIXELS = 16_000_000  # an uploaded photo's pixels, checked from its header (decompression bombs)
Z_BOUND = 1000.0  # latent coordinates beyond this are refused: the prior's are within +-6, float32 overflows later
MAX_K, MAX_STEPS, MAX_STROKES, MAX_POINTS = 8, 32, 64, 512
DEFAULT_K, DEFAULT_STEPS = 4, 8
PREVIEW_SIZE = 512  # the longest side of the photo preview sent to the page
START_SEED = 0  # the seed of the start latent when there is no photo
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1"]
_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+)((?:;[^,;]*)*);base64,(.*)", re.DOTALL)
# No external URL can load, whatever a page or an uploaded file tries: everything comes from this server.
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
     b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip
_log = logging.getLogger("genrt.web")

# -- request and response bodies ----------------------------------------------------------------------------------

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Point = Annotated[list[Fraction], Field(min_length=2, max_length=2, description="[x, y], fractions of W and H")]


class StrokeBody(BaseModel):
    """One stroke: points as fractions of the image's width and height (origin top left)."""

    model_config = ConfigDict(extra="forbid")
    tool: Literal["color", "sketch"]
    points: list[Point] = Field(min_length=1, max_length=MAX_POINTS)
    width: float = Field(0.08, gt=0.0, le=1.0, allow_inf_nan=False, description="a fraction of the image width")
    color: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        default=[255, 255, 255], min_length=3, max_length=3, description="[r, g, b]; ignored by sketch strokes"
    )


class InfoBody(BaseModel):
    model: str
    image_size: list[int]
    channels: int
    latent_dim: int
    k: int
    has_photo: bool


class StartBody(BaseModel):
    z: list[float]
    image: str = Field(description="G(z), a PNG data URL")
    photo: str | None = Field(description="a preview of the current photo (PNG data URL), or null")


class CandidateBody(BaseModel):
    z: list[float]
    image: str
    loss: float | None = Field(description="the objective, lower is better (null if not finite)")


class CandidatesBody(BaseModel):
    candidates: list[CandidateBody]


class FramesBody(BaseModel):
    frames: list[str]


class ImageBody(BaseModel):
    image: str


def _request_models(latent_dim: int, max_body: int):
    """The request bodies whose bounds depend on the model (the latent length) and the server (the body limit)."""
    latent = Annotated[
        list[Annotated[float, Field(ge=-Z_BOUND, le=Z_BOUND, allow_inf_nan=False)]],
        Field(min_length=latent_dim, max_length=latent_dim, description=f"a latent: {latent_dim} finite floats"),
    ]
    image_url = Annotated[
        str,
        Field(
            max_length=max_body, pattern=r"^data:image/[A-Za-z0-9.+-]+(;[^,;]*)*;base64,",
            description="an image as a data URL, data:image/png;base64,... (PNG, JPEG, WebP, TIFF, BMP or GIF)",
        ),
    ]  # fmt: skip

    class ProjectRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        image: image_url

    class EditRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        z0: latent
        strokes: list[StrokeBody] = Field(default=[], max_length=MAX_STROKES)
        k: int = Field(DEFAULT_K, ge=1, le=MAX_K, description="candidates to return")
        seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the seed of the random starts")
        proximity: float = Field(
            PROXIMITY, ge=0.0, le=10.0, allow_inf_nan=False,
            description="the weight of ||z - z0||^2: higher keeps the edits nearer the start image",
        )  # fmt: skip

    class MorphRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        z0: latent
        z1: latent
        steps: int = Field(DEFAULT_STEPS, ge=2, le=MAX_STEPS, description="frames, both ends included")

    class TransferRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        z0: latent
        z1: latent

    return ProjectRequest, EditRequest, MorphRequest, TransferRequest


# -- images -------------------------------------------------------------------------------------------------------


def data_url(image: np.ndarray) -> str:
    """A PNG data URL of a uint8 (H, W) or (H, W, C) image."""
    return "data:image/png;base64," + base64.b64encode(gimage.encode_png(image)).decode("ascii")


def decode_data_url(text: str, *, max_pixels: int = DEFAULT_MAX_PHOTO_PIXELS) -> np.ndarray:
    """A data URL's image as uint8 (H, W, C), C = 1 (grey) or 3 (RGB), upright; InvalidImageError if it is none.

    Decoded by genrt.image.read_image (from a private temporary file): its format checks, EXIF orientation and
    pixel limit apply.
    """
    match = _DATA_URL.fullmatch(text)
    if match is None:
        raise ArgumentError("image: expected a data URL, data:image/...;base64,...")
    try:
        data = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError("image: the data URL's base64 is corrupt") from None
    if not data:
        raise InvalidImageError("image: the data URL holds no data")
    with tempfile.TemporaryDirectory(prefix="genrt-edit-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            picture = gimage.read_image(path, max_pixels=max_pixels)
        except InvalidImageError as exc:  # its message names the file: name the upload instead
            message = str(exc).replace(str(path), "image").replace(" (max_pixels or GENRT_MAX_PIXELS raise it)", "")
            raise type(exc)(message) from None
    return _photo_pixels(picture)


def _photo_pixels(photo) -> np.ndarray:
    """A photo (path, Picture, numpy image) as uint8 (H, W, C), C = 1 or 3; alpha dropped, 16 bits cut to 8."""
    if isinstance(photo, str) or hasattr(photo, "__fspath__"):
        photo = gimage.read_image(photo)
    picture = photo if isinstance(photo, gimage.Picture) else gimage.to_picture(photo, name="photo")
    return gimage.from_picture(picture, like=np.zeros((1, 1, 3), np.uint8))


def _preview(photo: np.ndarray) -> np.ndarray:
    h, w = photo.shape[:2]
    scale = PREVIEW_SIZE / max(h, w)
    if scale >= 1:
        return photo
    return gimage.resize(photo, (max(1, round(h * scale)), max(1, round(w * scale))))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# -- the request body limit and the headers -----------------------------------------------------------------------


class _TooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body too large: the limit is {limit} bytes ({limit / 2**20:g} MiB)")


class _Guard:
    """ASGI middleware: 413 for a body over ``limit`` bytes (from Content-Length, or counted as it streams in: a
    chunked body has none), and the security headers on every response."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            await send(message)

        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                return await _json(scope, send_with_headers, 400, "bad Content-Length header")
            if int(length) > self.limit:
                return await _json(scope, send_with_headers, 413, _TooLarge(self.limit).detail)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge(self.limit)  # FastAPI re-raises HTTPExceptions from reading the body
            return message

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except _TooLarge as exc:
            if started:
                raise
            await _json(scope, send_with_headers, 413, exc.detail)


async def _json(scope, send, status: int, detail: str) -> None:
    async def nothing():
        return {"type": "http.disconnect"}

    await JSONResponse({"detail": detail}, status_code=status)(scope, nothing, send)


# -- the application ----------------------------------------------------------------------------------------------


def create_app(
    manipulator,
    photo=None,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    max_photo_pixels: int = DEFAULT_MAX_PHOTO_PIXELS,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The editor's FastAPI application over ``manipulator`` (a genrt.apps.manipulate.Manipulator).

    Args:
        manipulator: what ``genrt.load("igan-digits")`` returns.
        photo: a photo to start from (a path, a numpy image or a genrt.image.Picture), projected now; or None.
        max_body: the largest request body in bytes (413 above it).
        max_photo_pixels: the most pixels an uploaded photo may have (400 above it).
        allowed_hosts: the Host headers accepted (a guard against DNS rebinding on a loopback server); None: any.

    Returns:
        The application; run it with ``serve`` or any ASGI server.

    Example:
        >>> app = create_app(genrt.load("igan-digits"))  # doctest: +SKIP
    """
    m = manipulator
    lock = threading.Lock()  # one manipulator call at a time: its ONNX sessions already use every core
    ProjectRequest, EditRequest, MorphRequest, TransferRequest = _request_models(m.latent_dim, max_body)
    state = {"photo": None, "start": None}

    def start_from(pixels: np.ndarray | None) -> dict:
        if pixels is None:
            z = m.sample_latents(1, seed=START_SEED)[0]
            return {"z": z.tolist(), "image": data_url(m.generate(z[None])[0]), "photo": None}
        p = m.project(pixels)
        return {"z": np.asarray(p.z).tolist(), "image": data_url(p.image), "photo": data_url(_preview(pixels))}

    if photo is not None:
        state["photo"] = _photo_pixels(photo)
    state["start"] = start_from(state["photo"])

    app = FastAPI(
        title=f"genrt edit: {m.name}",
        version=genrt.__version__,
        description="iGAN-style generative visual manipulation: project, edit with strokes, morph, transfer.",
        docs_url=None,  # the interactive docs load scripts from a CDN; the page must load nothing from outside
        redoc_url=None,
    )
    app.add_middleware(_Guard, limit=max_body)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.exception_handler(GenrtError)
    async def _genrt_error(request, exc: GenrtError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        # Without the offending input FastAPI echoes: it may be huge, or NaN (which JSON cannot encode).
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]  # fmt: skip
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        _log.error("genrt edit: %s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error (see the server's log)"}, status_code=500)

    @app.get("/api/info", response_model=InfoBody)
    def info():
        return {
            "model": m.name, "image_size": list(m.image_size), "channels": m.channels, "latent_dim": m.latent_dim,
            "k": DEFAULT_K, "has_photo": state["photo"] is not None,
        }  # fmt: skip

    @app.get("/api/start", response_model=StartBody)
    def start():
        return state["start"]

    @app.post("/api/project", response_model=StartBody, responses={400: {"description": "not a readable image"}})
    def project(body: ProjectRequest):
        pixels = decode_data_url(body.image, max_pixels=max_photo_pixels)
        with lock:
            result = start_from(pixels)
            state["photo"], state["start"] = pixels, result
        return result

    @app.post("/api/edit", response_model=CandidatesBody)
    def edit(body: EditRequest):
        strokes = [s.model_dump() for s in body.strokes]
        with lock:
            candidates = m.edit(
                np.asarray(body.z0, np.float32), strokes, k=body.k, seed=body.seed, proximity=body.proximity
            )
        return {
            "candidates": [
                {"z": np.asarray(c.z).tolist(), "image": data_url(c.image), "loss": _finite(c.loss)}
                for c in candidates
            ]
        }

    @app.post("/api/morph", response_model=FramesBody)
    def morph(body: MorphRequest):
        with lock:
            frames = m.morph(np.asarray(body.z0, np.float32), np.asarray(body.z1, np.float32), steps=body.steps)
        return {"frames": [data_url(f) for f in frames]}

    @app.post("/api/transfer", response_model=ImageBody, responses={409: {"description": "no photo loaded"}})
    def transfer(body: TransferRequest):
        with lock:
            photo = state["photo"]
            if photo is None:
                raise HTTPException(409, "no photo to transfer the edit to: upload one, or start genrt edit with one")
            result = m.transfer(photo, np.asarray(body.z0, np.float32), np.asarray(body.z1, np.float32))
        return {"image": data_url(result)}

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # that folder only: it refuses ../ paths
    return app


# -- serving ------------------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); OSError (address in use, ...) as it comes."""
    family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(manipulator, photo=None, host: str = "127.0.0.1", port: int = 8765, **options) -> None:
    """Serves the editor with uvicorn until Ctrl-C; prints its URL. ``options`` go to create_app.

    A loopback server accepts only loopback Host headers; any other host is reachable from the network, and the
    editor has no authentication: a warning says so on stderr.
    """
    import uvicorn

    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ArgumentError(f"--port: expected 0 to 65535, got {port!r}")
    loopback = is_loopback(host)
    if not loopback:
        print(
            f"genrt edit: warning: serving on {host}, reachable from other machines; the editor has no login",
            file=sys.stderr,
        )
    options.setdefault("allowed_hosts", LOOPBACK_HOSTS + [host.strip("[]")] if loopback else None)
    app = create_app(manipulator, photo, **options)
    sock = bind(host, port)
    with sock:
        print(f"genrt edit: {manipulator.name} at {url_of(sock)}  (Ctrl-C to stop)", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        server.run(sockets=[sock])
