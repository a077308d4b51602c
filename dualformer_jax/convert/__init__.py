"""Two-way conversion between official PyTorch checkpoints and Flax variables (any family).

    variables = convert.from_pytorch('dualformer_tiny.pth', model)
    state_dict = convert.to_pytorch(variables, model)
    convert.save_state_dict(state_dict, 'exported.pth')

Command line: `python -m dualformer_jax.convert --help`.
"""

from dualformer_jax.convert.convert import ConversionError
from dualformer_jax.convert.convert import from_pytorch
from dualformer_jax.convert.convert import to_pytorch
from dualformer_jax.convert.convert import variable_shapes
from dualformer_jax.convert.io import load_state_dict
from dualformer_jax.convert.io import save_state_dict
from dualformer_jax.convert.inflate import from_pytorch_2d
from dualformer_jax.convert.inflate import inflate_with_report
