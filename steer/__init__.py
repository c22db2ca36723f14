"""steer: train and run language models you can steer by attributes and value statements."""

__version__ = "0.1.0"
