"""Compatibility path: `instropitch.pyfunc_model` before the package was split into layers.

Versions of `models:/instropitch` registered before then were logged as "models from code"
whose two-line model file says `from instropitch.pyfunc_model import InstroPitchModel`;
this module keeps them loading. New code imports `instropitch.serving.pyfunc`.
"""

from instropitch.serving.pyfunc import InstroPitchModel

__all__ = ["InstroPitchModel"]
