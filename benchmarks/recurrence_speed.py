"""One GRU layer of the published recipe on a GPU, piece by piece: the grouped recurrence's
forward and backward per frame, and the layer's input products.

    python benchmarks/recurrence_speed.py [--frames 64] [--batch 64] [--hidden 1024] [--repeats 20]

Six chains (three modalities x two) of hidden 1024 over 64 frames of 64 samples, the recurrent
products' operands in float16 (pretrain.py's CUDA default). Each piece is captured in a CUDA graph
and replayed, as the training step runs it; times are per frame where the piece is per frame.
``TRITON_PRINT_AUTOTUNING=1`` prints the tile shapes the kernels' timing picked.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from fast import recurrence  # noqa: E402
from fast.grouped import _InputProjection  # noqa: E402


def graphed_ms(fn, repeats):
    """Milliseconds per replay of ``fn`` captured in a CUDA graph (after an eager warm-up, which
    also runs the kernels' timing)."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=64)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--hidden', type=int, default=1024)
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit('recurrence_speed.py times CUDA kernels; no CUDA device is available')
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    dev, t, n, h, encoders = 'cuda', args.frames, args.batch, args.hidden, 3
    chains = 2 * encoders
    bound = (6 / (4 * h)) ** 0.5
    w16 = torch.empty(chains, 3 * h, h, device=dev).uniform_(-bound, bound).half()
    b_ih, b_hh = (0.1 * torch.randn(chains, 1, 3 * h, device=dev) for _ in 'ih')
    # the encoder's fused layout: per encoder (T, N, gate, chain, H), viewed (E, C, T, N, gate, H)
    gi = torch.randn(encoders, t, n, 3, 2, h, device=dev).permute(0, 4, 1, 2, 3, 5)
    print(f'device: {torch.cuda.get_device_name()}; torch {torch.__version__}; {chains} chains, hidden {h}, '
          f'{t} frames, batch {n}; graph replays of {args.repeats}')
    frames = t - 1  # the products run on frames 1.. (frame 0 starts from zero)
    fwd = graphed_ms(lambda: recurrence._forward(gi, w16, b_ih, b_hh, False, 'triton-frame'), args.repeats)
    fwd_save = graphed_ms(lambda: recurrence._forward(gi, w16, b_ih, b_hh, True, 'triton-frame'), args.repeats)
    out, cache = recurrence._forward(gi, w16, b_ih, b_hh, True, 'triton-frame')
    dout, dgi = torch.randn_like(out), torch.empty_like(gi)
    bwd = graphed_ms(lambda: recurrence._backward_triton(dout, w16, out, cache, dgi, 'triton-frame'), args.repeats)
    print(f'recurrence: forward {1e3 * fwd / frames:.1f} us/frame (saving for the backward '
          f'{1e3 * fwd_save / frames:.1f}), backward {1e3 * bwd / frames:.1f} us/frame; '
          f'layer {fwd_save + bwd:.2f} ms with the backward')
    features = 2 * h
    x = torch.randn(encoders, t * n, features, device=dev)
    weights = [torch.empty(6 * h, features, device=dev).uniform_(-bound, bound) for _ in range(encoders)]
    dgi_flat = torch.randn(encoders, t * n, 6 * h, device=dev)
    for fp16 in (False, True):
        ms = graphed_ms(lambda: _InputProjection.apply(x, fp16, None, *weights), args.repeats)
        flops = 2 * encoders * t * n * features * 6 * h
        print(f'input products of a layer ({encoders} x ({t * n} x {features}) @ ({features} x {6 * h})), '
              f'{"float16 operands" if fp16 else "TF32"}: {ms:.3f} ms, {flops / ms / 1e9:.0f} TFLOP/s')
    ms = graphed_ms(lambda: [dgi_flat[e] @ w for e, w in enumerate(weights)], args.repeats)
    print(f'their backward, input gradient (TF32): {ms:.3f} ms')
    ms = graphed_ms(lambda: [dgi_flat[e].t() @ x[e] for e in range(encoders)], args.repeats)
    print(f'their backward, weight gradient (TF32): {ms:.3f} ms')
    dgh = torch.randn(chains, t, n, 3 * h, device=dev)
    states = torch.randn(chains, t, n, h, device=dev)
    for name, fn in (('dgh^T @ h', lambda: dgh[:, 1:].reshape(chains, -1, 3 * h).transpose(1, 2)
                      @ states[:, :-1].reshape(chains, -1, h)),
                     ('(h^T @ dgh)^T', lambda: (states[:, :-1].reshape(chains, -1, h).transpose(1, 2)
                                                @ dgh[:, 1:].reshape(chains, -1, 3 * h)).transpose(1, 2))):
        ms = graphed_ms(fn, args.repeats)
        print(f'recurrent weight gradient as {name} (TF32): {ms:.3f} ms')


if __name__ == '__main__':
    main()
