"""Every notebook runs top to bottom on CPU with its small default settings."""

import json
import os
import pathlib

import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / 'notebooks'
TIMEOUT_S = 900  # per cell


def execute(name: str, cwd: pathlib.Path, monkeypatch, overrides: dict | None = None):
  """Runs `notebooks/<name>.ipynb` in `cwd`; returns the executed notebook.

  `overrides` are appended to the cell tagged `parameters` (as papermill does). The kernel
  finds the package through PYTHONPATH, as it would in a clone; raises on any cell error.
  """
  from nbclient import NotebookClient  # pylint: disable=import-outside-toplevel
  nb = nbformat.read(NOTEBOOKS / f'{name}.ipynb', as_version=4)
  if overrides:
    cell = next(c for c in nb.cells if 'parameters' in c.metadata.get('tags', []))
    cell.source += '\n# Injected by the test.\n' + '\n'.join(
        f'{k} = {v!r}' for k, v in overrides.items())
  monkeypatch.setenv('PYTHONPATH', str(REPO))
  # A plain CPU runtime: one device (the notebooks that want more simulate them), but
  # keep the test session's other XLA flags (they only shorten compilation).
  flags = [f for f in os.environ.get('XLA_FLAGS', '').split() if 'device_count' not in f]
  monkeypatch.setenv('XLA_FLAGS', ' '.join(flags))
  NotebookClient(nb, timeout=TIMEOUT_S, kernel_name='python3',
                 resources={'metadata': {'path': str(cwd)}}).execute()
  return nb


def text_outputs(nb) -> str:
  out = []
  for cell in nb.cells:
    for output in cell.get('outputs', []):
      if output.get('output_type') == 'stream':
        out.append(output['text'])
      elif 'data' in output and 'text/plain' in output['data']:
        out.append(output['data']['text/plain'])
  return '\n'.join(out)


def images(nb) -> int:
  return sum('image/png' in o.get('data', {}) for c in nb.cells for o in c.get('outputs', []))


@pytest.mark.parametrize('path', sorted(NOTEBOOKS.glob('*.ipynb')), ids=lambda p: p.stem)
def test_paired_with_a_text_twin_and_stored_without_outputs(path):
  import jupytext  # pylint: disable=import-outside-toplevel
  twin = path.with_suffix('.py')
  assert twin.exists(), f'{path.name} has no jupytext twin'
  nb, text = nbformat.read(path, as_version=4), jupytext.read(twin)
  assert [(c.cell_type, c.source) for c in nb.cells] == [
      (c.cell_type, c.source) for c in text.cells], f'run `jupytext --sync {twin}`'
  assert all(not c.get('outputs') and not c.get('execution_count') for c in nb.cells)
  assert sum('parameters' in c.metadata.get('tags', []) for c in nb.cells) == 1
  assert 'colab.research.google.com/assets/colab-badge.svg' in nb.cells[0].source
  code = [c.source for c in nb.cells if c.cell_type == 'code']
  install = next(s for s in code if s.startswith('REPO_URL = '))
  assert "'-m', 'pip', 'install'" in install and '@ git+{REPO_URL}' in install
  # Nothing needs the working directory to be a clone: no sys.path edits, no ../ paths.
  assert not any('sys.path' in s for s in code)
  assert not any("'../" in s or 'train.py' in s for s in code if s is not install)


def test_01_quickstart(tmp_path, monkeypatch):
  nb = execute('01_quickstart', tmp_path, monkeypatch)
  text = text_outputs(nb)
  table = text[text.index('rank  class'):].splitlines()
  assert [line.split()[0] for line in table[1:6]] == ['1', '2', '3', '4', '5']
  assert table[1].split()[1] in ('right', 'down', 'left', 'up', 'down_right', 'down_left',
                                 'up_right', 'up_left')
  assert text.count('rank  class') == 2  # in the notebook and from the command line
  assert images(nb) == 2  # the views, the overlays
  assert (tmp_path / 'quickstart_files' / 'new_nano.pth').exists()


@pytest.mark.slow  # the suite's time budget; test_predict covers an official .pth end to end
def test_01_quickstart_with_an_official_pth(tmp_path, monkeypatch, golden_state_dict):
  """The official golden checkpoint (mini, 10 classes, 224x224) through the notebook."""
  torch = pytest.importorskip('torch')
  pth = tmp_path / 'dualformer_mini.pth'
  torch.save({'state_dict': {k: torch.from_numpy(v.copy())
                             for k, v in golden_state_dict.items()}}, pth)
  nb = execute('01_quickstart', tmp_path, monkeypatch,
               {'CHECKPOINT': str(pth), 'NUM_CLIPS': 1})
  text = text_outputs(nb)
  assert '10 classes, clips of (8, 224, 224)' in text
  assert text.count('rank  class') == 2 and 'class_' in text
  assert images(nb) == 2


def test_02_finetune_your_videos(tmp_path, monkeypatch):
  nb = execute('02_finetune_your_videos', tmp_path, monkeypatch)
  text = text_outputs(nb)
  assert 'train/right/broken.mp4: zero-byte file' in text  # the skip report
  assert "'train': 24" in text and 'does not fit num_classes=8: re-initializing' in text
  files = tmp_path / 'finetune_files'
  rows = [json.loads(line) for line in (files / 'workdir' / 'metrics.jsonl').open()]
  assert [r['step'] for r in rows if 'loss' in r] == list(range(1, 9))
  assert [r['step'] for r in rows if 'top1' in r] == [4, 8]
  assert '8 train rows' in text and images(nb) == 1
  assert 'rank  class' in text and '(true class: down)' in text
  assert 'dualformer_nano_my_videos.pth: 162 tensors, classifier (8, 256)' in text
  assert 'round trip max |difference|: 0.0' in text


def test_03_train_on_tpu(tmp_path, monkeypatch):
  nb = execute('03_train_on_tpu', tmp_path, monkeypatch)
  text = text_outputs(nb)
  assert '8 devices (cpu)' in text
  assert "logical ('embed', 'mlp') -> mesh ('fsdp', 'tensor'): (16, 64) on each device" in text
  assert "logits (4, 8) P(('data', 'fsdp'), None) | on one device: (1, 8)" in text
  assert 'sending SIGTERM (a preemption) after step 2' in text
  stopped = int(text.split('SIGTERM received: saving step ')[1].split()[0])
  assert 2 <= stopped < 4 and f'at step {stopped}.' in text  # 'Resumed from ... at step N.'
  rows = [json.loads(line) for line in (tmp_path / 'tpu_files' / 'workdir' /
                                        'metrics.jsonl').open()]
  assert [r['step'] for r in rows if 'loss' in r] == [1, 2, 3, 4]  # none lost or repeated
  assert rows[-1]['step'] == 4 and 'top1' in rows[-1]
