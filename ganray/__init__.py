"""ganray: synthesize labelled training datasets with GANs on a Ray cluster."""

__version__ = "0.1.0"
