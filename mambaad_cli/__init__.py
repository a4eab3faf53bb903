"""mambaad: multi-class unsupervised visual anomaly detection with MambaAD."""

__version__ = "0.1.0"
