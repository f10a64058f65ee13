"""Distributed set-up, rank-0 output, atomic (and background) saving, RNG state and logging helpers."""
import builtins
import datetime
import json
import os
import random
import subprocess
import sys
import threading

import numpy as np
import torch
import torch.distributed as dist

from utils.io import write_atomic, write_text_atomic  # noqa: F401 (re-exported)


def init_distributed(args):
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    args.distributed = int(os.environ.get('WORLD_SIZE', 1)) > 1
    args.rank, args.world_size, args.local_rank = 0, 1, 0
    if not args.distributed:
        return
    args.rank, args.world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    args.local_rank = int(os.environ.get('LOCAL_RANK', 0))
    backend = 'nccl' if args.device == 'cuda' else 'gloo'
    if args.device == 'cuda':
        torch.cuda.set_device(args.local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    dist.barrier()
    setup_for_distributed(args.rank == 0)


def setup_for_distributed(is_main):
    """Silence ``print`` on every rank but 0 (``print(..., force=True)`` still prints)."""
    builtin_print = builtins.print

    def print(*args, **kwargs):
        if kwargs.pop('force', False) or is_main:
            builtin_print(*args, **kwargs)
    builtins.print = print


def is_main_process():
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def git_revision():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=here, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ('-dirty' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def announce(args):
    """Print the git revision and the sorted arguments (rank 0 only, like every print)."""
    print(f'git revision: {git_revision()}')
    print('\n'.join(f'{k}: {v}' for k, v in sorted(vars(args).items())))


def save_atomic(obj, path):
    write_atomic(path, lambda f: torch.save(obj, f))


class BackgroundSaver:
    """Writes checkpoints on a thread while training goes on: the published model's checkpoint
    (2.5 GB with the optimizer) took 6.3 s to write on our development machine, against some
    20 s for a whole NTU-60 epoch on one H100.

    ``save`` waits for the previous write, copies the state's tensors into host buffers kept from
    one save to the next (pinned for CUDA tensors: a fast copy, and no fresh pages to fault in),
    so later steps cannot change what is written; the thread then writes each path atomically
    and calls ``then`` (e.g. the epoch's log line, so the log never runs ahead of the
    checkpoint). The thread is not a daemon: on Ctrl-C or an error the interpreter finishes the
    write before it exits. ``wait`` returns once the last write is done and raises its error."""

    def __init__(self):
        self._thread, self._error, self._buffers = None, None, {}

    def save(self, obj, paths, then=None):
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(self._to_host(obj), list(paths), then),
                                        name='checkpoint-writer')
        self._thread.start()

    def _to_host(self, obj, path=()):
        if isinstance(obj, torch.Tensor):
            buffer = self._buffers.get(path)
            if buffer is None or buffer.shape != obj.shape or buffer.dtype != obj.dtype:
                buffer = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=obj.is_cuda)
                self._buffers[path] = buffer
            return buffer.copy_(obj.detach())
        if isinstance(obj, dict):
            return {k: self._to_host(v, path + (k,)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._to_host(v, path + (i,)) for i, v in enumerate(obj))
        return obj

    def _write(self, obj, paths, then):
        try:
            for path in paths:
                save_atomic(obj, path)
            if then is not None:
                then()
        except BaseException as e:  # raised in the training thread by wait()
            self._error = e

    def wait(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def get_rng_state():
    """Every RNG the run draws from, as tensors and plain values (loads with weights_only)."""
    version, state, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    out = {'torch': torch.get_rng_state(),
           'python': {'version': version, 'state': torch.tensor(state, dtype=torch.int64), 'gauss': gauss},
           'numpy': {'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                     'has_gauss': int(has_gauss), 'cached': float(cached)}}
    if torch.cuda.is_available():
        out['cuda'] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    py = state['python']
    random.setstate((py['version'], tuple(py['state'].tolist()), py['gauss']))
    nps = state['numpy']
    np.random.set_state(('MT19937', nps['keys'].numpy().astype(np.uint32), nps['pos'], nps['has_gauss'], nps['cached']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def append_jsonl(path, record):
    with open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')


def plain(value):
    """Args as plain containers, so checkpoints load with ``weights_only=True``."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def run_cli(main, parser):
    """Run an entry script; expected failures (bad files, settings, diverged runs) print one
    clear line and exit 1 instead of a traceback."""
    try:
        main(parser.parse_args())
    except (FileNotFoundError, ValueError, FloatingPointError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)


def save_results(output_path, protocol, args, info, streams, settings, **extra):
    """Write ``results.json``: what was evaluated, how (``settings``: names of ``args`` or a
    dict), and the accuracies and whatever else ``extra`` holds."""
    if not isinstance(settings, dict):
        settings = {k: getattr(args, k) for k in settings}
    record = {'protocol': protocol, 'dataset': args.dataset, 'benchmark': args.protocol,
              'checkpoint': info['checkpoint'], 'checkpoint_sha256': info['sha256'],
              'encoder_kind': info['kind'], 'pretrain_dataset': info['pretrain_args'].get('dataset'),
              'pretrain_epoch': info['epoch'], 'streams': streams,
              'settings': {**settings, 'frames': info['frames']},
              **extra, 'git_revision': git_revision()}
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    write_text_atomic(output_path, json.dumps(record, indent=1))
    print(f'wrote {output_path}')
    return record
