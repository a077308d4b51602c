"""DualFormer (local-global stratified video transformer) in JAX/Flax."""

import os as _os

# jaxlib 0.10's CPU backend hands some fusions to YNNPACK, whose transpose kernel
# crashes or corrupts results on this model's window layouts (seen as segfaults and NaN
# gradients). Turn those fusions off unless the user chose a setting; no effect on GPU/TPU.
# Must run before JAX initializes its CPU backend.
_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
if _YNN_FLAG not in _os.environ.get('XLA_FLAGS', ''):
  _os.environ['XLA_FLAGS'] = (_os.environ.get('XLA_FLAGS', '') + f' {_YNN_FLAG}=').strip()

__version__ = '0.1.0'
