"""DualFormer (local-global stratified video transformer) in JAX/Flax."""

__version__ = "0.1.0"
