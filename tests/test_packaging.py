"""The package builds as a wheel, installs, and every console script answers --help."""

import os
import shutil
import subprocess
import sys
import venv

from conftest import REPO

SCRIPTS = ('dualformer-train', 'dualformer-predict', 'dualformer-convert',
           'dualformer-build', 'dualformer-flops')


def test_wheel_installs_and_console_scripts_answer_help(tmp_path):
  source = tmp_path / 'src'  # a copy, so that the build writes nothing into the checkout
  top_level = {'.git', 'build', 'data', 'notebooks', 'benchmarks', '.pytest_cache'}
  def ignore(directory, names):
    return [n for n in names if n == '__pycache__' or n.endswith('.egg-info')
            or n.startswith('workdir') or (directory == str(REPO) and n in top_level)]
  shutil.copytree(REPO, source, ignore=ignore)
  wheels = tmp_path / 'wheels'
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                  '-q', '-w', str(wheels), str(source)], check=True, timeout=300)
  wheel, = wheels.glob('dualformer_jax-*.whl')
  env_dir = tmp_path / 'venv'
  venv.create(env_dir, system_site_packages=True, with_pip=False)
  bin_dir = env_dir / ('Scripts' if os.name == 'nt' else 'bin')
  python = bin_dir / 'python'
  subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '-q',
                  '--no-deps', '--no-index', str(wheel)], check=True, timeout=300)
  outside = tmp_path / 'elsewhere'  # not the checkout: the installed package answers
  outside.mkdir()
  environment = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  where = subprocess.run([str(python), '-c', 'import dualformer_jax; print(dualformer_jax.__file__)'],
                         cwd=outside, env=environment, capture_output=True, text=True, check=True)
  assert str(env_dir) in where.stdout, where.stdout
  for script in SCRIPTS:
    result = subprocess.run([str(bin_dir / script), '--help'], cwd=outside, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (script, result.stdout, result.stderr)
    assert 'usage:' in result.stdout, (script, result.stdout)
  # The shipped configs are found by their checkout path from anywhere.
  result = subprocess.run([str(bin_dir / 'dualformer-train'), '--config', 'configs/default.py',
                           '--workdir', str(tmp_path / 'w'), '--config.train.lrr=1'],
                          cwd=outside, env=environment, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 1 and 'train.lrr' in result.stderr, result.stderr
  # The notebooks' route to them: load_config reads the copy inside the installed package.
  code = ('from dualformer_jax.cli import train; '
          "print(train.shipped_configs_dir(), train.load_config('configs/default.py').seed)")
  result = subprocess.run([str(python), '-c', code], cwd=outside, env=environment,
                          capture_output=True, text=True, timeout=120, check=True)
  shipped, seed = result.stdout.split()
  assert shipped.startswith(str(env_dir)) and seed == '0', result.stdout
