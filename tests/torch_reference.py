"""An independent PyTorch DualFormer, written from `reference/ARCHITECTURE.md`.

A second implementation to test the Flax model and the converter against: channels-first
video `(B, C, D, H, W)`, tokens `(B, N, C)` with `N = D*H*W` row-major, built from stock
torch layers (Conv3d, BatchNorm3d, LayerNorm(eps=1e-5), exact GELU, Linear), with module
names chosen so that `state_dict()` has exactly the official keys of
`reference/state_dicts/*.txt`. It shares no code with `dualformer_jax`.

    ref = DualFormerRef(num_classes=400, **dualformer_jax.models.VARIANTS['tiny'])
    logits = ref(video)          # video [B, 3, D, H, W]
    feats = ref.features(video)  # [B, C_3, D/2, H/32, W/32]
"""

import math
from typing import Sequence

import torch
from torch import nn

COARSE_STAGES = (0, 1)  # ARCHITECTURE.md section 4: the coarse level exists only here.


def _div(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int]:
  return tuple(int(x) // int(y) for x, y in zip(a, b))


def _to_video(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
  """Tokens (B, N, C) -> (B, C, D, H, W)."""
  b, _, c = x.shape
  return x.transpose(1, 2).reshape(b, c, *size)


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
  """(B, C, D, H, W) -> tokens (B, N, C)."""
  return x.flatten(2).transpose(1, 2)


def _attend(q, k, v, scale, attn_drop):
  """q (.., heads, n, e), k/v (.., heads, m, e) -> (.., heads, n, e)."""
  attn = (q * scale) @ k.transpose(-2, -1)
  return attn_drop(attn.softmax(dim=-1)) @ v


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
  """(B, heads, n, e) -> (B, n, heads * e), channel = head * e + i."""
  b, h, n, e = x.shape
  return x.transpose(1, 2).reshape(b, n, h * e)


class DropPath(nn.Module):

  def __init__(self, p: float = 0.0):
    super().__init__()
    self.p = p

  def forward(self, x):
    if not self.training or self.p == 0.0:
      return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
    return x * keep / (1.0 - self.p)


class LocalWindowAttention(nn.Module):
  """LW-MSA: softmax attention inside non-overlapping (wd, wh, ww) windows."""

  def __init__(self, dim, num_heads, window, qkv_bias=True, attn_drop=0.0, proj_drop=0.0):
    super().__init__()
    self.heads, self.window = num_heads, tuple(window)
    self.scale = (dim // num_heads) ** -0.5
    self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
    self.attn_drop = nn.Dropout(attn_drop)
    self.proj = nn.Linear(dim, dim)
    self.proj_drop = nn.Dropout(proj_drop)

  def forward(self, x, size):
    b, _, c = x.shape
    d, h, w = size
    wd, wh, ww = self.window
    nd, nh, nw = d // wd, h // wh, w // ww
    # (B, D, H, W, C) -> (B*windows, wd*wh*ww, C), window-internal order (d, h, w).
    x = x.reshape(b, nd, wd, nh, wh, nw, ww, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    x = x.reshape(b * nd * nh * nw, wd * wh * ww, c)
    n = x.shape[1]
    qkv = self.qkv(x).reshape(x.shape[0], n, 3, self.heads, c // self.heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B*windows, heads, n, e)
    x = self.proj_drop(self.proj(_merge_heads(_attend(q, k, v, self.scale, self.attn_drop))))
    x = x.reshape(b, nd, nh, nw, wd, wh, ww, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, d * h * w, c)


class GlobalPyramidAttention(nn.Module):
  """GP-MSA: every token attends to a pyramid of pooled tokens (or to all tokens)."""

  def __init__(self, dim, num_heads, fine_kernel, coarse_kernels=None, qkv_bias=True,
               attn_drop=0.0, proj_drop=0.0):
    super().__init__()
    self.heads = num_heads
    self.scale = (dim // num_heads) ** -0.5
    self.q = nn.Linear(dim, dim, bias=qkv_bias)
    self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
    self.pooled = math.prod(fine_kernel) > 1  # else: full global attention, no norm
    if self.pooled:
      self.sr = nn.Conv3d(dim, dim, fine_kernel, stride=fine_kernel, groups=dim)
      self.norm = nn.LayerNorm(dim, eps=1e-5)
      if coarse_kernels is not None:
        first, second = coarse_kernels
        self.lr = nn.Sequential(
            nn.Conv3d(dim, dim, first, stride=first, groups=dim),
            nn.BatchNorm3d(dim, eps=1e-5, momentum=0.1),
            nn.ReLU(),
            nn.Conv3d(dim, dim, second, stride=second, groups=dim))
      else:
        self.lr = None
    self.attn_drop = nn.Dropout(attn_drop)
    self.proj = nn.Linear(dim, dim)
    self.proj_drop = nn.Dropout(proj_drop)

  def forward(self, x, size):
    b, n, c = x.shape
    e = c // self.heads
    q = self.q(x).reshape(b, n, self.heads, e).transpose(1, 2)
    if self.pooled:
      video = _to_video(x, size)
      pooled = [_to_tokens(self.sr(video))]
      if self.lr is not None:
        pooled.append(_to_tokens(self.lr(video)))
      kv_in = self.norm(torch.cat(pooled, dim=1))
    else:
      kv_in = x
    m = kv_in.shape[1]
    kv = self.kv(kv_in).reshape(b, m, 2, self.heads, e).permute(2, 0, 3, 1, 4)
    out = _attend(q, kv[0], kv[1], self.scale, self.attn_drop)
    return self.proj_drop(self.proj(_merge_heads(out)))


class Mlp(nn.Module):

  def __init__(self, dim, hidden, drop=0.0):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.act = nn.GELU()  # exact erf form
    self.fc2 = nn.Linear(hidden, dim)
    self.drop = nn.Dropout(drop)

  def forward(self, x):
    return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):

  def __init__(self, dim, attn, mlp_ratio, drop=0.0, drop_path=0.0):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=1e-5)
    self.attn = attn
    self.norm2 = nn.LayerNorm(dim, eps=1e-5)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
    self.drop_path = DropPath(drop_path)

  def forward(self, x, size):
    x = x + self.drop_path(self.attn(self.norm1(x), size))
    return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):

  def __init__(self, in_dim, dim, kernel):
    super().__init__()
    self.proj = nn.Conv3d(in_dim, dim, kernel, stride=kernel)
    self.norm = nn.LayerNorm(dim, eps=1e-5)

  def forward(self, video):
    video = self.proj(video)
    return self.norm(_to_tokens(video)), tuple(video.shape[2:])


class PosBlock(nn.Module):
  """PEG: x + depthwise 3x3x3 conv of x."""

  def __init__(self, dim):
    super().__init__()
    self.proj = nn.Sequential(nn.Conv3d(dim, dim, 3, stride=1, padding=1, groups=dim))

  def forward(self, x, size):
    video = _to_video(x, size)
    return _to_tokens(self.proj(video) + video)


class Backbone(nn.Module):

  def __init__(self, video_size, patch_size, embed_dims, num_heads, depths, mlp_ratios,
               qkv_bias, temporal_pooling, local_sizes, fine_pysizes, coarse_pysizes,
               drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0):
    super().__init__()
    total = sum(depths)
    rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    self.patch_embeds = nn.ModuleList()
    self.blocks = nn.ModuleList()
    self.pos_block = nn.ModuleList()
    self.pos_drop = nn.Dropout(drop_rate)
    res = _div(video_size, patch_size)
    index = 0
    for i, dim in enumerate(embed_dims):
      if i > 0:
        res = (res[0] // temporal_pooling[i], res[1] // 2, res[2] // 2)
      kernel = tuple(patch_size) if i == 0 else (temporal_pooling[i], 2, 2)
      self.patch_embeds.append(PatchEmbed(3 if i == 0 else embed_dims[i - 1], dim, kernel))
      fine = _div(res, fine_pysizes[i])
      coarse = None
      if i in COARSE_STAGES:
        k_c = _div(res, coarse_pysizes[i])
        coarse = ((1, 7, 7), _div(k_c, (1, 7, 7)))
      stage = nn.ModuleList()
      for j in range(depths[i]):
        if j % 2 == 0:
          attn = LocalWindowAttention(dim, num_heads[i], local_sizes[i], qkv_bias,
                                      attn_drop_rate, drop_rate)
        else:
          attn = GlobalPyramidAttention(dim, num_heads[i], fine, coarse, qkv_bias,
                                        attn_drop_rate, drop_rate)
        stage.append(Block(dim, attn, mlp_ratios[i], drop_rate, rates[index]))
        index += 1
      self.blocks.append(stage)
      self.pos_block.append(PosBlock(dim))
    self.norm = nn.LayerNorm(embed_dims[-1], eps=1e-5)

  def forward(self, video):
    """(B, 3, D, H, W) -> (B, C_3, D', H', W')."""
    x = video
    for i, embed in enumerate(self.patch_embeds):
      if i > 0:
        x = _to_video(x, size)
      x, size = embed(x)
      x = self.pos_drop(x)
      for j, block in enumerate(self.blocks[i]):
        x = block(x, size)
        if j == 0:
          x = self.pos_block[i](x, size)
    return _to_video(self.norm(x), size)


class I3DHead(nn.Module):

  def __init__(self, dim, num_classes, dropout=0.5):
    super().__init__()
    self.dropout = nn.Dropout(dropout)
    self.fc_cls = nn.Linear(dim, num_classes)

  def forward(self, features):
    return self.fc_cls(self.dropout(features.mean(dim=(2, 3, 4))))


class DualFormerRef(nn.Module):
  """Backbone + I3D head; `state_dict()` keys are the official recognizer's."""

  def __init__(self, num_classes, video_size, patch_size, embed_dims, num_heads, depths,
               mlp_ratios, qkv_bias, temporal_pooling, local_sizes, fine_pysizes,
               coarse_pysizes, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0,
               head_dropout=0.5):
    super().__init__()
    self.backbone = Backbone(video_size, patch_size, embed_dims, num_heads, depths,
                             mlp_ratios, qkv_bias, temporal_pooling, local_sizes,
                             fine_pysizes, coarse_pysizes, drop_rate, attn_drop_rate,
                             drop_path_rate)
    self.cls_head = I3DHead(embed_dims[-1], num_classes, head_dropout)

  def features(self, video):
    return self.backbone(video)

  def forward(self, video):
    return self.cls_head(self.backbone(video))
