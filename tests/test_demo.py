"""The quick demo end to end: synthetic data -> CMD and MoCo pretraining -> kNN and linear."""
import json
import os
import subprocess
import sys


def test_quick_demo_learns(tmp_path):
    env = dict(os.environ, WORK=str(tmp_path), PYTHON=sys.executable)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(['bash', 'scripts/demo.sh', '--quick'], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '| cmd |' in done.stdout and '| moco |' in done.stdout and '| random |' in done.stdout

    def knn(name):
        return json.loads((tmp_path / 'eval' / f'{name}-knn' / 'results.json').read_text())['accuracy']
    # pretraining must beat the random encoder clearly, even in a few epochs
    assert knn('cmd')['fused']['top1@k=1'] > knn('random')['fused']['top1@k=1'] + 5
    assert knn('moco')['joint']['top1@k=1'] > knn('random')['joint']['top1@k=1'] + 5
