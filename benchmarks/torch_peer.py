"""The PyTorch peer of `benchmarks/model.py`: the same DualFormer run eagerly in PyTorch.

The peer is `tests/torch_reference.DualFormerRef`, an independent PyTorch implementation
with the official module structure (stock Conv3d, LayerNorm, Linear, exact GELU), which
the tests hold to the official golden and to our gradients. Eager mode, float32, all of
this process's cores (`torch.get_num_threads()`), channels-first input `[b, 3, t, h, w]`.
The train step is forward + cross-entropy + backward + `torch.optim.AdamW` (the same
hyper-parameters as our step), dropout and drop-path at the variant's rates (0 here).

Only DualFormer has a peer: `available(variant)` says whether one can run.
"""

from __future__ import annotations

import os
import sys
import time

TESTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests')


def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return torch


def available(variant: str) -> str | None:
  """None when a peer can run for `variant`, else why not (one line)."""
  from dualformer_jax import models  # pylint: disable=import-outside-toplevel
  if _import_torch() is None:
    return 'torch is not installed (pip install -e ".[torch]")'
  if models.family_of_variant(variant).name != 'dualformer':
    return f'no PyTorch peer for the {models.family_of_variant(variant).name} family'
  if not os.path.isfile(os.path.join(TESTS_DIR, 'torch_reference.py')):
    return 'tests/torch_reference.py is not in this checkout'
  return None


class TorchPeer:
  """One compiled-free (eager) PyTorch configuration; `run()` times one call."""

  def __init__(self, variant: str, clip: tuple[int, int, int], batch: int, mode: str,
               num_classes: int = 400, seed: int = 0):
    torch = _import_torch()
    from dualformer_jax import models  # pylint: disable=import-outside-toplevel
    if TESTS_DIR not in sys.path:
      sys.path.insert(0, TESTS_DIR)
    from torch_reference import DualFormerRef  # pylint: disable=import-outside-toplevel,g-import-not-at-top

    self.torch, self.mode = torch, mode
    torch.manual_seed(seed)
    spec = dict(models.VARIANTS[variant])
    spec['video_size'] = tuple(clip)
    self.model = DualFormerRef(num_classes=num_classes, head_dropout=0.0, **spec)
    self.video = torch.randn(batch, 3, *clip)  # [b, 3, t, h, w]
    self.labels = torch.arange(batch) % num_classes
    if mode == 'train':
      self.model.train()
      self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3,
                                         betas=(0.9, 0.999), weight_decay=0.02)
    else:
      self.model.eval()

  def _step(self):
    torch = self.torch
    if self.mode == 'forward':
      with torch.no_grad():
        return self.model(self.video)
    self.optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(self.model(self.video), self.labels)
    loss.backward()
    self.optimizer.step()
    return loss

  def run(self) -> float:
    """Seconds for one call (eager PyTorch is synchronous on CPU)."""
    start = time.perf_counter()
    out = self._step()
    float(out.detach().float().sum())  # materialize the result
    return time.perf_counter() - start

  def warm_up(self, runs: int = 2) -> float:
    """The first eager runs allocate and pick kernels; returns the last one's seconds."""
    return [self.run() for _ in range(runs)][-1]

  @property
  def num_threads(self) -> int:
    return self.torch.get_num_threads()
