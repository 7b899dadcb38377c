"""Data URLs made and read by Pillow, not by the server's own code."""

import base64
import io

import numpy as np


def decode(url: str, *, png: bool = True) -> np.ndarray:
    """A data URL's image as uint8 (H, W, C), by Pillow; png: check it is a PNG one (what the server sends)."""
    from PIL import Image

    head, _, body = url.partition(",")
    assert head.startswith("data:image/png;base64") or not png, head[:40]
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(body))))
    return image[..., None] if image.ndim == 2 else image


def encode(image: np.ndarray, fmt: str = "PNG") -> str:
    """A uint8 image as a data URL of format fmt, by Pillow."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[2] == 1 else image).save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()
