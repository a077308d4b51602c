"""Package list for setuptools; everything else is in pyproject.toml.

The checkout's `configs/` is shipped as `dualformer_jax/configs`, so that an installed
`dualformer-train --config configs/default.py` finds the shipped configs anywhere.
"""
import setuptools

setuptools.setup(
    packages=setuptools.find_packages(include=['dualformer_jax', 'dualformer_jax.*'])
    + ['dualformer_jax.configs'],
    package_dir={'dualformer_jax.configs': 'configs'},
)
