"""genrt's applications, one task per module; each defines its Model kind and registers it with the runtime.

- stylize: perceptual-loss style transfer (Johnson et al. 2016), the ``stylizer`` kind.
- upscale: perceptual-loss super-resolution (Johnson et al. 2016), the ``upscaler`` kind.
- inpaint: hole filling with context encoders (Pathak et al. 2016), the ``inpainter`` kind.
"""

from genrt.apps import inpaint, manipulate, stylize, upscale  # noqa: F401  (each registers its kind)
