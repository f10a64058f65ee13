"""Checkpoint files: read safely (tensors and plain containers only), written atomically and on
a background thread while training goes on."""
import os
import pickle
import re
import threading
import warnings

import torch

from utils.io import write_atomic
from utils.rng import get_rng_state, seed_everything, set_rng_state
from utils.run import plain


def run_state(model, optimizer, scaler, epoch, args, dataset, record):
    """Everything a run continues from (docs/checkpoints.md): the model, optimizer and scaler
    states, the epochs done, the settings with their sources, rank 0's RNG state, the dataset's
    description and the last epoch's log line (restored if a kill came between the checkpoint and
    the log)."""
    return {'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(),
            'epoch': epoch, 'args': plain(dict(vars(args), sources=args.sources)), 'rng': get_rng_state(),
            'dataset': dataset.to_json(), 'log': record}


def restore_run_state(checkpoint, model, optimizer, scaler, args):
    """The inverse of :func:`run_state` for ``--resume``; returns the epoch to continue from."""
    try:
        model.load_state_dict(checkpoint['model'])
        optimizer.load_state_dict(checkpoint['optimizer'])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f'--resume {args.resume} does not fit this model (was it trained with other '
                         f'settings? its args: {checkpoint.get("args")}): {str(e)[:500]}') from None
    scaler.load_state_dict(checkpoint['scaler'])
    set_rng_state(checkpoint['rng'])
    if args.rank:  # only rank 0's RNG state is saved; keep the ranks' streams apart
        seed_everything(args.seed + args.rank + 1000 * checkpoint['epoch'])
    print(f'resumed from {args.resume} at epoch {checkpoint["epoch"]}')
    return checkpoint['epoch']


def read_checkpoint(path, label='--checkpoint'):
    """``torch.load(path, weights_only=True)`` with one clear line for each way it can fail:
    no such file, unreadable (empty, truncated, not a PyTorch file), or holding objects other
    than tensors and plain containers (refused: such objects could run code when loaded)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{label} {path}: no such file')
    try:
        with warnings.catch_warnings():
            # a plain pickle of another protocol: the error below says what it is
            warnings.filterwarnings('ignore', message='Detected pickle protocol')
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r'GLOBAL (\S+) was not an allowed global', str(e))
        if refused:
            raise ValueError(f'{label} {path}: holds {refused.group(1)}, not only tensors and plain containers; '
                             'refused, since loading such objects can run code') from None
        raise ValueError(f'{label} {path}: unreadable: {_damage(path)}') from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, TypeError):
        raise ValueError(f'{label} {path}: unreadable: {_damage(path)}') from None


def _damage(path):
    size = os.path.getsize(path)
    if size == 0:
        return 'the file is empty'
    with open(path, 'rb') as f:
        head = f.read(4)
    if head.startswith(b'PK'):
        return f'a damaged or truncated PyTorch file ({size:,} bytes)'
    return f'not a PyTorch checkpoint, or one cut short ({size:,} bytes)'


def save_atomic(obj, path):
    write_atomic(path, lambda f: torch.save(obj, f))


class BackgroundSaver:
    """Writes checkpoints on a thread, so the next epoch trains while the last one is written
    (the published model's checkpoint is 2.5 GB with the optimizer; write times in
    ``benchmarks/RESULTS.md``).

    ``save`` waits for the previous write, copies the state's tensors into host buffers kept from
    one save to the next (pinned for CUDA tensors: a fast copy, and no fresh pages to fault in),
    so later steps cannot change what is written; the thread then writes each path atomically
    and calls ``then`` (e.g. the epoch's log line, so the log never runs ahead of the
    checkpoint). The thread is not a daemon: on Ctrl-C or an error the interpreter finishes the
    write before it exits. ``wait`` returns once the last write is done and raises its error;
    ``written`` is the last path of the last completed save."""

    def __init__(self):
        self._thread, self._error, self._buffers = None, None, {}
        self.written = None

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
            self.written = paths[-1]
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
