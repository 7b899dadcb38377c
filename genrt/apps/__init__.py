"""genrt's applications, one task per module; each defines its Model kind and registers it with the runtime.

- stylize: perceptual-loss style transfer (Johnson et al. 2016), the ``stylizer`` kind.
- upscale: perceptual-loss super-resolution (Johnson et al. 2016), the ``upscaler`` kind.
"""

from genrt.apps import stylize, upscale  # noqa: F401  (each registers its kind)
