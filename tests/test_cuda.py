"""The same checks on a CUDA GPU (cuDNN kernels, the grouped recurrence's Triton kernels, CUDA
graphs, device-side augmentation, mixed precision). Skipped where there is no GPU;
``benchmarks/gpu_check.sh`` runs them on a lent machine."""
import copy
import functools
import json

import pytest
import torch

from engine import train_step
from evaluation.knn import knn_predict
from fast.grouped import grouped_features
from fast.model import FastCMD
from fast.recurrence import gru_recurrence
from fast.step import GraphedStep
from feeder.augment import center_crop_resize, random_crop_resize, random_spatial, resize_window
from tests.conftest import gru, run_pretrain, tf32_switches, with_defaults
from tests.golden import GOLDEN, build
from tests.reference import published_gru_features

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
CUDA = torch.device('cuda')


@pytest.fixture
def full_float32():
    """No TF32 in matrix products, so the GPU is compared with float32 arithmetic."""
    with tf32_switches(False):
        yield


def test_fused_gru_equals_frame_by_frame_on_cudnn(full_float32):
    torch.manual_seed(0)
    encoder = gru(256, 3, dim=128).to(CUDA).eval()
    published = torch.nn.GRU(150, 256, 3, batch_first=True, bidirectional=True).to(CUDA)
    published.load_state_dict(encoder.released_gru_state())
    x = torch.randn(16, 3, 64, 25, 2, device=CUDA)
    with torch.no_grad():
        torch.testing.assert_close(encoder.features(x), published_gru_features(published, encoder.input_norm, x),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('kernels', ['triton', 'triton-frame', 'torch'])
def test_grouped_recurrence_on_the_gpu_equals_cudnn(full_float32, kernels):
    torch.manual_seed(0)
    fused = [gru(256, 3, dim=128).to(CUDA).train() for _ in range(3)]
    grouped = copy.deepcopy(fused)
    inputs = [torch.randn(16, 3, 64, 25, 2, device=CUDA) for _ in fused]
    weights = [torch.randn(16, 512, device=CUDA) for _ in fused]
    expected = [e.features(x) for e, x in zip(fused, inputs)]
    got = grouped_features(grouped, inputs, kernels)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    sum((f * w).sum() for f, w in zip(expected, weights)).backward()
    sum((f * w).sum() for f, w in zip(got, weights)).backward()
    for a, b in zip(fused, grouped):
        for (name, p), q in zip(a.gru.named_parameters(), b.gru.parameters()):
            torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)


def test_fp16_operand_kernels_equal_their_reference_on_the_gpu(full_float32):
    # the reference rounds the same operands with tensor operations; both products accumulate
    # in float32, so they differ by summation order and by where a rounding flips
    torch.manual_seed(0)
    gi = torch.randn(6, 32, 64, 3 * 256, device=CUDA, requires_grad=True)
    w = (0.06 * torch.randn(6, 3 * 256, 256, device=CUDA)).requires_grad_()
    b = torch.randn(6, 1, 3 * 256, device=CUDA, requires_grad=True)
    dout = torch.randn(6, 32, 64, 256, device=CUDA)
    results = {}
    for kernels in ('torch', 'triton-frame'):
        out = gru_recurrence(gi, w, b, kernels, recurrent_fp16=True)
        results[kernels] = [out, *torch.autograd.grad((out * dout).sum(), (gi, w, b))]
    for name, expected, got in zip(('out', 'gi', 'w', 'b'), results['torch'], results['triton-frame']):
        assert (got - expected).norm() / expected.norm() < 1e-3, name
    exact = gru_recurrence(gi.double(), w.double(), b.double(), 'torch')
    assert (results['triton-frame'][0] - exact).norm() / exact.norm() < 1e-3


def test_fp16_operand_encoders_are_as_accurate_as_tf32_on_the_gpu():
    # the whole grouped encoder (input products and recurrence) with float16 operands against
    # float64, next to the TF32 path: the errors must be of one size, in features and gradients
    torch.manual_seed(0)
    base = [gru(256, 3, dim=128).train() for _ in range(3)]
    inputs = [torch.randn(16, 3, 32, 25, 2) for _ in base]
    weights = [torch.randn(16, 512) for _ in base]

    def run(encoders, device, dtype, **kwargs):
        encoders = [copy.deepcopy(e).to(device, dtype) for e in encoders]
        feats = grouped_features(encoders, [x.to(device, dtype) for x in inputs], **kwargs)
        sum((f * w.to(device, dtype)).sum() for f, w in zip(feats, weights)).backward()
        grads = torch.cat([p.grad.flatten() for e in encoders for p in e.gru.parameters()])
        return torch.cat(feats).double().cpu(), grads.double().cpu()

    exact = run(base, 'cpu', torch.float64, kernels='torch')
    with tf32_switches(True):
        tf32 = run(base, CUDA, torch.float32, kernels='triton')
        fp16 = run(base, CUDA, torch.float32, kernels='triton-frame', recurrent_fp16=True)
    for name, e, t, f in zip(('features', 'gradients'), exact, tf32, fp16):
        err_tf32, err_fp16 = ((x - e).norm() / e.norm() for x in (t, f))
        assert err_fp16 < 1.5 * err_tf32 + 1e-6, (name, err_fp16.item(), err_tf32.item())


@pytest.mark.parametrize('grouped', [False, True], ids=['fused', 'grouped'])
def test_golden_step_on_the_gpu(full_float32, grouped):
    golden = torch.load(GOLDEN, weights_only=True)
    config = golden['config']
    model = (build(config, FastCMD, grouped=True) if grouped else build(config)).to(CUDA).train()
    model.load_released_state_dict({k: v.to(CUDA) for k, v in golden['state_dict_before'].items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=config['lr'], momentum=config['momentum'],
                                weight_decay=config['weight_decay'])
    total, stats = model((golden['inputs']['view_query'].to(CUDA), golden['inputs']['view_key'].to(CUDA)))
    torch.testing.assert_close(stats['cmd'].cpu(), golden['losses']['cmd'], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(total.detach().cpu(), golden['total_loss'], atol=1e-4, rtol=1e-4)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    after = model.released_state_dict()
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


@pytest.mark.parametrize('extra, rel', [([], 2e-2), (['--amp'], 0.05), (['--amp', '--amp-dtype', 'float16'], 0.05)],
                         ids=['tf32-fp16-operands', 'bfloat16', 'float16'])
def test_fast_pretraining_on_the_gpu_stays_close_to_full_float32(data_root, tmp_path, extra, rel):
    # the same clips and random draws (device augmentation, one seed) as a full-float32 run of the
    # reference code: the fast defaults' rounding (and --amp's) moves the logged losses a little
    common = ('--epochs', '2', '--device', 'cuda', '--augment-on', 'device')
    run_pretrain(data_root, tmp_path / 'reference', *common, '--speed', 'reference', '--no-tf32')
    run_pretrain(data_root, tmp_path / 'fast', *common, *extra)
    logs = {k: [json.loads(line) for line in (tmp_path / k / 'log.txt').read_text().splitlines()]
            for k in ('reference', 'fast')}
    assert len(logs['fast']) == 2
    for full, fast in zip(logs['reference'], logs['fast']):
        for key in ('loss', 'infonce_joint', 'infonce_motion', 'infonce_bone'):
            assert fast[key] == pytest.approx(full[key], rel=rel), key
    args = json.loads((tmp_path / 'fast' / 'args.json').read_text())
    assert args['speed'] == 'fast' and args['gru_impl'] == 'grouped'
    assert args['recurrent_fp16'] == ('--amp' not in extra)  # the CUDA default with TF32


@pytest.mark.parametrize('amp, overlap, kernels, fp16', [
    (False, False, 'auto', False), (False, True, 'auto', False), (True, True, 'auto', False),
    (False, True, 'triton-frame', False), (False, True, 'triton-frame', True), (True, True, 'triton-frame', False)],
    ids=['float32', 'float32-overlap', 'bfloat16-overlap', 'frame-float32', 'frame-fp16-operands', 'frame-bfloat16'])
def test_graphed_steps_equal_eager_steps(full_float32, amp, overlap, kernels, fp16):
    """Replays of the captured step (new batches, a learning-rate change on the way) leave the
    model where eager steps do."""
    def train(graph):
        torch.manual_seed(0)
        with CUDA:
            model = with_defaults(FastCMD, lambda: gru(64, 3, dim=128), queue_size=256, topk=64, grouped=True,
                                  kernels=kernels, recurrent_fp16=fp16, overlap_keys=overlap and graph).train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9,
                                    weight_decay=1e-4, fused=graph)  # fused SGD: the same update
        scaler = torch.amp.GradScaler('cuda', enabled=False)
        step = (GraphedStep(model, optimizer, scaler, amp) if graph
                else functools.partial(train_step, model, optimizer, scaler, amp=amp))
        gen = torch.Generator(device=CUDA).manual_seed(1)
        losses = []
        for i in range(9):
            if i == 6:
                optimizer.param_groups[0]['lr'] = 0.005
            views = [torch.randn(32, 3, 16, 25, 2, device=CUDA, generator=gen) for _ in range(2)]
            loss, stats = step(views)
            losses.append(loss.clone())
        return model.state_dict(), torch.stack(losses), step
    eager, eager_losses, _ = train(False)
    graphed, graphed_losses, step = train(True)
    assert step.graph is not None and step.key == ([0.005], None)
    tol = dict(atol=2e-2, rtol=2e-2) if amp else dict(atol=1e-4, rtol=1e-3)
    if fp16:  # the same kernels in both, but a rounding to float16 can flip with the summation order
        tol = dict(atol=2e-3, rtol=1e-2)
    torch.testing.assert_close(graphed_losses, eager_losses, **tol)
    for key, value in eager.items():
        torch.testing.assert_close(graphed[key].float(), value.float(), **tol, msg=key)


@pytest.mark.parametrize('method', ['skeletonclr', 'crossclr', 'aimclr'])
def test_every_methods_graphed_steps_equal_its_eager_steps(full_float32, method):
    """An ST-GCN method's step captured and replayed (dropout drawn inside it) leaves the model where
    eager steps do, across a learning-rate change and the start of mining (recaptured for both)."""
    from models import METHODS
    from models.stgcn import STGCNEncoder
    from feeder.layouts import NTU25
    cls, views = METHODS[method], len(METHODS[method].VIEWS)
    mining = {} if method == 'skeletonclr' else dict(mining_epoch=1)

    def train(graph):
        torch.manual_seed(0)
        with CUDA:
            model = with_defaults(cls, lambda: STGCNEncoder(NTU25, base_channels=8, out_channels=32, dim=16),
                                  dim=16, queue_size=64, **mining).train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9,
                                    weight_decay=1e-4, fused=graph)
        scaler = torch.amp.GradScaler('cuda', enabled=False)
        step = GraphedStep(model, optimizer, scaler) if graph else functools.partial(train_step, model, optimizer,
                                                                                     scaler)
        gen = torch.Generator(device=CUDA).manual_seed(1)
        losses = []
        for i in range(12):
            model.set_epoch(i // 8)  # mining from step 8 on
            if i == 5:
                optimizer.param_groups[0]['lr'] = 0.005
            batch = [torch.randn(16, 3, 20, 25, 2, device=CUDA, generator=gen) for _ in range(views)]
            losses.append(step(batch)[0].clone())
        return model.state_dict(), torch.stack(losses), step
    eager, eager_losses, _ = train(False)
    graphed, graphed_losses, step = train(True)
    assert step.key == ([0.005], None if method == 'skeletonclr' else True)
    torch.testing.assert_close(graphed_losses, eager_losses, atol=1e-4, rtol=1e-3)
    for key, value in eager.items():
        torch.testing.assert_close(graphed[key].float(), value.float(), atol=1e-4, rtol=1e-3, msg=key)


def test_an_stgcn_method_pretrains_graphed_after_its_self_check(data_root, tmp_path, capsys):
    run_pretrain(data_root, tmp_path / 'skeletonclr', '--method', 'skeletonclr', '--epochs', '2', '--frames', '16',
                 '--device', 'cuda', '--knn-every', '0')
    args = json.loads((tmp_path / 'skeletonclr' / 'args.json').read_text())
    assert args['cuda_graph'] and args['speed_fallback'] is None
    assert 'self-check of the fast path passed' in capsys.readouterr().out


def test_pretraining_implementations_agree_on_the_gpu(data_root, tmp_path, full_float32):
    runs = {}
    variants = {'fused': ['--gru-impl', 'fused', '--no-cuda-graph'], 'graphed': [],
                'frame': ['--gru-kernels', 'triton-frame']}
    for name, extra in variants.items():
        runs[name] = run_pretrain(data_root, tmp_path / name, '--epochs', '2', '--device', 'cuda', '--no-tf32', *extra)
    args = json.loads((tmp_path / 'graphed' / 'args.json').read_text())
    assert args['gru_impl'] == 'grouped' and args['cuda_graph'] and args['overlap_keys']  # the CUDA defaults
    assert not args['tf32'] and not args['recurrent_fp16']
    for other in ('graphed', 'frame'):
        state = runs[other].state_dict()
        for key, value in runs['fused'].state_dict().items():
            torch.testing.assert_close(state[key], value, atol=1e-4, rtol=1e-3, msg=f'{other}: {key}')
