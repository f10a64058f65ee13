"""The same checks on a CUDA GPU (cuDNN kernels, device-side augmentation, mixed precision).
Skipped where there is no GPU; ``benchmarks/gpu_check.sh`` runs them on a lent machine."""
import json

import pytest
import torch

from feeder.augment import center_crop_resize, random_crop_resize, random_spatial, resize_window
from models.checkpoint import load_published_cmd, published_cmd_state
from models.gru import GRUEncoder
from tests.conftest import run_pretrain
from tests.reference import published_gru_features
from tests.test_golden import GOLDEN, build
from utils.knn import knn_predict

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
CUDA = torch.device('cuda')


def test_fused_gru_equals_frame_by_frame_on_cudnn():
    torch.manual_seed(0)
    encoder = GRUEncoder(150, 256, 3, dim=128).to(CUDA).eval()
    gru = torch.nn.GRU(150, 256, 3, batch_first=True, bidirectional=True).to(CUDA)
    gru.load_state_dict(encoder.published_gru_state())
    x = torch.randn(16, 3, 64, 25, 2, device=CUDA)
    with torch.no_grad():
        torch.testing.assert_close(encoder.features(x), published_gru_features(gru, encoder.input_norm, x),
                                   atol=1e-4, rtol=1e-4)


def test_golden_step_on_the_gpu():
    golden = torch.load(GOLDEN, weights_only=True)
    config = golden['config']
    model = build(config).to(CUDA).train()
    load_published_cmd(model, {k: v.to(CUDA) for k, v in golden['state_dict_before'].items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=config['lr'], momentum=config['momentum'],
                                weight_decay=config['weight_decay'])
    total, stats = model(golden['inputs']['view_query'].to(CUDA), golden['inputs']['view_key'].to(CUDA))
    torch.testing.assert_close(stats['cmd'].cpu(), golden['losses']['cmd'], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(total.detach().cpu(), golden['total_loss'], atol=1e-4, rtol=1e-4)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    after = published_cmd_state(model)
    for key, value in golden['state_dict_after_one_sgd_step'].items():
        torch.testing.assert_close(after[key].cpu().to(value.dtype), value, atol=1e-4, rtol=1e-3, msg=key)


def test_augmentations_on_the_gpu_match_the_cpu():
    x = torch.randn(8, 3, 300, 25, 2)
    start, length = torch.randint(0, 100, (8,)), torch.randint(1, 200, (8,))
    torch.testing.assert_close(resize_window(x.to(CUDA), start.to(CUDA), length.to(CUDA), 64).cpu(),
                               resize_window(x, start, length, 64))
    n = torch.randint(1, 300, (8,))
    torch.testing.assert_close(center_crop_resize(x.to(CUDA), n.to(CUDA), 64).cpu(), center_crop_resize(x, n, 64))
    out = random_spatial(random_crop_resize(x.to(CUDA), n.to(CUDA), 64), 15)
    assert out.device.type == 'cuda' and out.shape == (8, 3, 64, 25, 2) and torch.isfinite(out).all()


def test_knn_on_the_gpu_equals_the_cpu():
    train, test = torch.randn(2000, 64), torch.randn(300, 64)
    labels = torch.randint(0, 10, (2000,))
    gpu = knn_predict(train.to(CUDA), labels.to(CUDA), test.to(CUDA), [1, 5])
    cpu = knn_predict(train, labels, test, [1, 5])
    assert all(torch.equal(gpu[k].cpu(), cpu[k]) for k in (1, 5))


@pytest.mark.parametrize('extra', [[], ['--amp'], ['--amp', '--amp-dtype', 'float16']])
def test_pretraining_on_the_gpu(data_root, tmp_path, extra):
    run_pretrain(data_root, tmp_path, '--epochs', '2', '--device', 'cuda', '--augment-on', 'device', *extra)
    log = [json.loads(line) for line in (tmp_path / 'log.txt').read_text().splitlines()]
    assert len(log) == 2 and all(abs(r['loss']) < 1e3 for r in log)
