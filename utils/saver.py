"""Checkpoint writing: atomic, and on a background thread while training goes on."""
import threading

import torch

from utils.io import write_atomic


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
