"""steer: train and run language models you can steer by attributes and value statements."""

__version__ = "0.1.0"


def stream(*args, **kwargs):  # noqa: ANN002, ANN003 - see steer.api.stream
    """Streamed steered generation from Python; see :func:`steer.api.stream`."""
    from steer.api import stream as _stream

    return _stream(*args, **kwargs)


# ``steer.generate`` is the generation package and, called, the Python API (steer/generate/__init__.py).
from steer import generate  # noqa: E402,F401  (light: no torch until called)
