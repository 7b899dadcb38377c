"""genrt.load(...) of a ``genrt.kind = "classifier"`` model: images -> class logits.

The graph takes images (N, C, S, S) in ``input_range`` and returns logits (N, K). The methods take uint8 images of
any size, (N, H, W) or (N, H, W, C), and resize and convert them to what the metadata says the model was trained on.
"""

from __future__ import annotations

import numpy as np

from genrt.runtime import _images
from genrt.runtime.models import Model


class Classifier(Model):
    """A classifier: ``predict`` (class indices) and ``predict_proba`` (probabilities); ``classes`` names them."""

    _MAX_BATCH = 512

    @property
    def classes(self) -> list[str]:
        if "classes" in self.metadata:
            return list(self.metadata["classes"])
        return [str(k) for k in range(self.outputs[0].shape[1])]

    def logits(self, images) -> np.ndarray:
        """The model's class logits for uint8 images: float32 (N, K)."""
        x = _images.images_to_model(
            images,
            size=self.image_size,
            channels=self.channels,
            value_range=self.metadata.get("input_range", (-1.0, 1.0)),
        )
        return np.concatenate([self(x[i : i + self._MAX_BATCH]) for i in range(0, len(x), self._MAX_BATCH)])

    def predict_proba(self, images) -> np.ndarray:
        """Class probabilities (softmax of the logits) for uint8 images (N, H, W[, C]): float32 (N, K)."""
        z = self.logits(images).astype(np.float64)
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)

    def predict(self, images) -> np.ndarray:
        """The most likely class index for each uint8 image (N, H, W[, C]): int64 (N,)."""
        return self.logits(images).argmax(1).astype(np.int64)
