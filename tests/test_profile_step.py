"""`benchmarks/profile_step.py`: a traced step broken down in its family's own layer kinds."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'benchmarks'))

import profile_step  # noqa: E402  (benchmarks/profile_step.py)

from dualformer_jax import models  # noqa: E402


def test_mobile_former_step_is_broken_down_by_its_own_layer_kinds():
  result = profile_step.profile('mobile_former_3d_mini', (2, 32, 32), 2, 'train', 1)
  by_key = result['by_key']
  categories = {c for c, _ in by_key}
  known = {name for name, _ in models.family_of_variant(
      'mobile_former_3d_mini').profile_categories}
  assert {'batch norm', 'dynamic relu', 'depthwise conv'} <= categories
  assert categories <= known | {'other', 'optimizer / other'}
  assert by_key[('batch norm', 'forward')] > 0 and by_key[('batch norm', 'backward')] > 0
  total = sum(by_key.values())
  assert sum(v for (c, _), v in by_key.items() if c == 'other') < 0.5 * total
  assert result['thunks'][0][0] >= result['thunks'][-1][0]  # costliest first
  text = profile_step.report(result, top_thunks=3)
  assert '| batch norm |' in text and 'costliest thunks' in text
