"""genrt's applications, one task per module; each defines its Model kind and registers it with the runtime.

- stylize: perceptual-loss style transfer (Johnson et al. 2016), the ``stylizer`` kind.
"""

from genrt.apps import stylize  # noqa: F401  (registers its kind)
