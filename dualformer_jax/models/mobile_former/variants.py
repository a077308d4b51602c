"""Mobile-Former variants in one table: the seven official image models and our video family.

Each block row is `(kind, e1, c_out, stride, e2)`, the official `[type, e1, c_out, n, s, e2]`
rows with n = 1: kind `'lite'` (bneck-lite, the first block, hidden e1 * C_in), `'mf'` (a
stride-1 Mobile-Former block, hidden e1 * C_in) or `'mf_down'` (a stride-2 Mobile-Former
block, hiddens e1 * C_in and e2 * C_out). Widths and expansions are the official code's
(AAboys/MobileFormer @ f44731062abb); `IMAGE_FACTS` holds what it was measured to give.

The video family (`mobile_former_3d_*`) is OUR reconstruction of Video Mobile-Former
(Wang et al., arXiv 2208.12257, whose architecture was never published in a form we
could read): the image widths of MF-151M/214M/294M/508M inflated to 3D, with one table of
6 tokens for the whole clip. Its figures are proposals, measured, not published.
"""

from typing import Any

Row = tuple[str, int, int, int, int]

_BLOCKS_52M: tuple[Row, ...] = (  # Also MF-26M (with grouped pointwise convs).
    ('lite', 3, 12, 2, 0),
    ('mf', 3, 12, 1, 0),
    ('mf_down', 6, 24, 2, 4), ('mf', 3, 24, 1, 0),
    ('mf_down', 6, 48, 2, 4), ('mf', 4, 48, 1, 0), ('mf', 6, 64, 1, 0),
    ('mf_down', 6, 96, 2, 4), ('mf', 6, 96, 1, 0),
)
_BLOCKS_96M: tuple[Row, ...] = (
    ('lite', 2, 12, 1, 0),
    ('mf_down', 6, 16, 2, 4),
    ('mf_down', 6, 32, 2, 4), ('mf', 3, 32, 1, 0),
    ('mf_down', 6, 64, 2, 4), ('mf', 4, 64, 1, 0), ('mf', 6, 88, 1, 0),
    ('mf_down', 6, 128, 2, 4), ('mf', 6, 128, 1, 0),
)
_BLOCKS_151M: tuple[Row, ...] = (
    ('lite', 2, 12, 1, 0),
    ('mf_down', 6, 16, 2, 4), ('mf', 3, 16, 1, 0),
    ('mf_down', 6, 32, 2, 4), ('mf', 3, 32, 1, 0),
    ('mf_down', 6, 64, 2, 4), ('mf', 4, 64, 1, 0), ('mf', 6, 88, 1, 0), ('mf', 6, 88, 1, 0),
    ('mf_down', 6, 128, 2, 4), ('mf', 6, 128, 1, 0), ('mf', 6, 128, 1, 0),
)
_BLOCKS_214M: tuple[Row, ...] = (
    ('lite', 2, 12, 1, 0),
    ('mf_down', 6, 20, 2, 4), ('mf', 3, 20, 1, 0),
    ('mf_down', 6, 40, 2, 4), ('mf', 4, 40, 1, 0),
    ('mf_down', 6, 80, 2, 4), ('mf', 4, 80, 1, 0), ('mf', 6, 112, 1, 0),
    ('mf', 6, 112, 1, 0),
    ('mf_down', 6, 160, 2, 4), ('mf', 6, 160, 1, 0), ('mf', 6, 160, 1, 0),
)
_BLOCKS_294M: tuple[Row, ...] = (
    ('lite', 2, 16, 1, 0),
    ('mf_down', 6, 24, 2, 4), ('mf', 4, 24, 1, 0),
    ('mf_down', 6, 48, 2, 4), ('mf', 4, 48, 1, 0),
    ('mf_down', 6, 96, 2, 4), ('mf', 4, 96, 1, 0), ('mf', 6, 128, 1, 0),
    ('mf', 6, 128, 1, 0),
    ('mf_down', 6, 192, 2, 4), ('mf', 6, 192, 1, 0), ('mf', 6, 192, 1, 0),
)
_BLOCKS_508M: tuple[Row, ...] = (
    ('lite', 2, 24, 1, 0),
    ('mf_down', 6, 40, 2, 4), ('mf', 3, 40, 1, 0),
    ('mf_down', 6, 72, 2, 4), ('mf', 3, 72, 1, 0),
    ('mf_down', 6, 128, 2, 4), ('mf', 4, 128, 1, 0), ('mf', 6, 176, 1, 0),
    ('mf', 6, 176, 1, 0),
    ('mf_down', 6, 240, 2, 4), ('mf', 6, 240, 1, 0), ('mf', 6, 240, 1, 0),
)


def _arch(stem, blocks, tokens, num_features, groups=1) -> dict[str, Any]:
  return dict(stem_channels=stem, blocks=blocks, num_tokens=tokens[0], token_dim=tokens[1],
              num_features=num_features, groups=groups)


# Official image variants (224x224, 1000 classes).
_IMAGE_ARCH = {
    '26m': _arch(8, _BLOCKS_52M, (3, 128), 1024, groups=4),
    '52m': _arch(8, _BLOCKS_52M, (3, 128), 1024),
    '96m': _arch(12, _BLOCKS_96M, (4, 128), 1280),
    '151m': _arch(12, _BLOCKS_151M, (6, 192), 1280),
    '214m': _arch(12, _BLOCKS_214M, (6, 192), 1600),
    '294m': _arch(16, _BLOCKS_294M, (6, 192), 1920),
    '508m': _arch(24, _BLOCKS_508M, (6, 192), 1920),
}
IMAGE_VARIANTS: dict[str, dict[str, Any]] = {
    f'mobile_former_{name}': dict(arch, image_size=(224, 224))
    for name, arch in _IMAGE_ARCH.items()}

# Official facts per image variant: exact parameter count (1000 classes, measured on the
# official code), the README's rounded count, the MFLOPs of the name, fvcore's total with
# BatchNorm and the conv+linear+matmul multiply-adds only (both measured at 224x224),
# README top-1, and the training recipe (timm train.py: lr, weight decay, --drop).
IMAGE_FACTS: dict[str, dict[str, Any]] = {
    'mobile_former_26m': dict(params=3_232_788, readme_params_m=3.2, mflops=26,
                              fvcore_mflops=26.05, macs_mflops=23.55, top1=64.0,
                              lr=8e-4, weight_decay=0.08, drop=0.1),
    'mobile_former_52m': dict(params=3_469_092, readme_params_m=3.5, mflops=52,
                              fvcore_mflops=51.79, macs_mflops=49.29, top1=68.7,
                              lr=8e-4, weight_decay=0.10, drop=0.2),
    'mobile_former_96m': dict(params=4_585_252, readme_params_m=4.6, mflops=96,
                              fvcore_mflops=96.33, macs_mflops=92.02, top1=72.8,
                              lr=8e-4, weight_decay=0.10, drop=0.2),
    'mobile_former_151m': dict(params=7_595_828, readme_params_m=7.6, mflops=151,
                               fvcore_mflops=152.01, macs_mflops=146.25, top1=75.2,
                               lr=9e-4, weight_decay=0.10, drop=0.2),
    'mobile_former_214m': dict(params=9_425_920, readme_params_m=9.4, mflops=214,
                               fvcore_mflops=215.25, macs_mflops=208.37, top1=76.7,
                               lr=9e-4, weight_decay=0.15, drop=0.2),
    'mobile_former_294m': dict(params=11_422_648, readme_params_m=11.4, mflops=294,
                               fvcore_mflops=295.43, macs_mflops=286.73, top1=77.9,
                               lr=1e-3, weight_decay=0.20, drop=0.3),
    'mobile_former_508m': dict(params=13_976_976, readme_params_m=14.0, mflops=508,
                               fvcore_mflops=510.64, macs_mflops=498.47, top1=79.3,
                               lr=1e-3, weight_decay=0.20, drop=0.3),
}

for _facts in IMAGE_FACTS.values():  # The keys every family's reports read.
  _facts.update(gflops=_facts['mflops'] / 1000, gflops_input=(224, 224), num_classes=1000,
                source='official code and README (AAboys/MobileFormer)')

# Our video family: image widths, 3x3x3 depthwise kernels in every Mobile-Former block,
# the default clip of the proposal's cost table.
VIDEO_VARIANTS: dict[str, dict[str, Any]] = {
    'mobile_former_3d_xs': dict(_IMAGE_ARCH['151m'], video_size=(8, 160, 160)),
    'mobile_former_3d_s': dict(_IMAGE_ARCH['214m'], video_size=(8, 160, 160)),
    'mobile_former_3d_m': dict(_IMAGE_ARCH['294m'], video_size=(16, 160, 160)),
    'mobile_former_3d_l': dict(_IMAGE_ARCH['508m'], video_size=(16, 172, 172)),
    # Ablation: temporal kernel 1 everywhere; the tokens are the only temporal mixer.
    'mobile_former_3d_s_t1': dict(_IMAGE_ARCH['214m'], video_size=(8, 160, 160),
                                  temporal_kernel=1),
    # Not a reconstruction variant: every block kind once, tiny widths, for tests and
    # quick checks (the training-stack tests compile it in seconds).
    'mobile_former_3d_mini': dict(
        _arch(8, (('lite', 2, 8, 1, 0), ('mf_down', 4, 16, 2, 4), ('mf', 3, 16, 1, 0),
                  ('mf_down', 4, 32, 2, 4)), (3, 64), 128),
        video_size=(4, 32, 32)),
}

# The proposal's measured cost (fvcore GFLOPs per view incl. BatchNorm, and MACs only)
# at each variant's default clip, and parameters with a 400-class head (millions,
# rounded): figures of our reconstruction, not published ones, hence the `proposal_`
# keys (reports that print `gflops` as "official" must not show them as such).
VIDEO_FACTS: dict[str, dict[str, Any]] = {
    'mobile_former_3d_xs': dict(widths='mobile_former_151m', proposal_gflops=0.642,
                                proposal_macs_gflops=0.619, proposal_params_400_m=6.91),
    'mobile_former_3d_s': dict(widths='mobile_former_214m', proposal_gflops=0.915,
                               proposal_macs_gflops=0.888, proposal_params_400_m=8.57),
    'mobile_former_3d_m': dict(widths='mobile_former_294m', proposal_gflops=2.503,
                               proposal_macs_gflops=2.434, proposal_params_400_m=10.40),
    'mobile_former_3d_l': dict(widths='mobile_former_508m', proposal_gflops=5.420,
                               proposal_macs_gflops=5.303, proposal_params_400_m=12.99),
    'mobile_former_3d_s_t1': dict(widths='mobile_former_214m', proposal_gflops=0.800,
                                  proposal_params_400_m=8.47),
}
for _name, _facts in VIDEO_FACTS.items():
  _facts.update(proposal_input=VIDEO_VARIANTS[_name]['video_size'], num_classes=400,
                source='our reconstruction: measured cost of the proposal, not published')

# Architecture fields stored with checkpoints.
IMAGE_ARCHITECTURE_FIELDS = ('num_classes', 'image_size', 'stem_channels', 'blocks',
                             'num_tokens', 'token_dim', 'num_features', 'groups')
VIDEO_ARCHITECTURE_FIELDS = ('num_classes', 'video_size', 'stem_channels', 'blocks',
                             'num_tokens', 'token_dim', 'num_features', 'groups',
                             'temporal_kernel')
