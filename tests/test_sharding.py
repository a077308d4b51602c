"""Parameters sharded over a simulated 8-device mesh by the logical axis rules."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from dualformer_jax import models
from dualformer_jax import sharding


def test_mesh_creation_and_errors():
  assert len(jax.devices()) == 8, 'tests expect 8 simulated CPU devices (conftest.py)'
  mesh = sharding.create_mesh({'fsdp': 2, 'tensor': 2, 'data': -1})
  assert dict(mesh.shape) == {'data': 2, 'fsdp': 2, 'tensor': 2}
  assert dict(sharding.create_mesh().shape) == {'data': 8, 'fsdp': 1, 'tensor': 1}
  with pytest.raises(ValueError, match='needs 12 devices'):
    sharding.create_mesh({'data': 3, 'fsdp': 2, 'tensor': 2})
  with pytest.raises(ValueError, match='Unknown mesh axes'):
    sharding.create_mesh({'model': 2})


def test_sharded_init_matches_single_device_and_is_sharded():
  model = models.create_model('nano', num_classes=8)
  clips = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 64, 64, 3))
  init = lambda key: model.init(key, clips[:1])
  mesh = sharding.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  variables, shardings = sharding.init_sharded(init, mesh, sharding.DEFAULT_RULES,
                                               jax.random.PRNGKey(0))

  # Sharded as the rules say: embed -> fsdp, mlp/heads/qkv -> tensor, norms replicated.
  block = variables['params']['backbone']['block_0_0']
  fc1 = block['mlp']['fc1']['kernel']  # [embed=32, mlp=128]
  assert fc1.sharding.spec == P('fsdp', 'tensor')
  assert fc1.addressable_shards[0].data.shape == (16, 64)
  assert block['attn']['qkv']['kernel'].sharding.spec == P('fsdp', 'tensor')
  assert block['mlp']['fc2']['kernel'].sharding.spec == P('tensor', 'fsdp')
  assert block['norm1']['scale'].sharding.spec in (P(), P(None))  # replicated
  sr = variables['params']['backbone']['block_0_1']['attn']['sr']['kernel']  # [kd, kh, kw, c]
  assert sr.sharding.spec == P(None, None, None, 'fsdp')
  bytes_on_device0 = sum(s.data.nbytes for leaf in jax.tree_util.tree_leaves(variables)
                         for s in leaf.addressable_shards if s.device == jax.devices()[0])
  total_bytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(variables))
  assert bytes_on_device0 < 0.4 * total_bytes  # no full copy on one device

  # Same values and same logits as a plain single-device run.
  single = jax.device_put(jax.device_get(variables), jax.devices()[0])
  logits_single = jax.jit(lambda v, x: model.apply(v, x))(single, clips)
  with mesh, nn.logical_axis_rules(sharding.DEFAULT_RULES):
    batch = jax.device_put(clips, sharding.batch_sharding(mesh, clips.ndim))
    logits_mesh = jax.jit(lambda v, x: model.apply(v, x))(variables, batch)
  assert len(logits_mesh.sharding.device_set) == 8
  np.testing.assert_allclose(logits_mesh, logits_single, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(logits_single).max()) > 0
