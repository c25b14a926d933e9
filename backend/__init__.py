"""Label Studio ML backend for ML-assisted sentiment row labeling."""

__version__ = "0.1.0"
