"""Train or evaluate: `python train.py --config configs/default.py --workdir DIR` (see dualformer_jax/cli/train.py)."""
import sys
from dualformer_jax.cli.train import main
if __name__ == '__main__':
  sys.exit(main())
