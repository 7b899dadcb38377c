"""genrt's web editor: iGAN-style generative visual manipulation in a browser (the `web` extra).

genrt edit igan-digits [photo.png] --port 8765

``create_app(manipulator, photo=None)`` is the FastAPI application, ``serve(...)`` runs it with uvicorn. FastAPI,
pydantic and uvicorn are imported here only: ``import genrt`` never needs them.
"""

from genrt.errors import MissingDependencyError

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:
    raise MissingDependencyError(
        f"the web editor needs {exc.name or 'fastapi and uvicorn'}: pip install genrt[web]"
    ) from None

from genrt.web.server import DEFAULT_MAX_BODY, create_app, serve  # noqa: E402

__all__ = ["DEFAULT_MAX_BODY", "create_app", "serve"]
