"""Distributed set-up, rank-0-only output, and stopping every rank when one dies
(docs/pretraining.md, "What a run survives")."""
import builtins
import contextlib
import datetime
import os
import signal
import socket
import sys
import threading
import time

import torch
import torch.distributed as dist

from utils.io import pid_alive

# A rank that has not beaten its heart for DEAD_AFTER seconds has died (or hangs outside Python).
HEARTBEAT, DEAD_AFTER = 5.0, 60.0
# After saying so, the main thread gets GRACE seconds to stop by itself (finishing a checkpoint
# write); a main thread stuck in a collective that will never complete is then ended.
GRACE = 30.0


def launch_env():
    """``(rank, world_size, local_rank)`` as ``torchrun`` sets them; ``(0, 1, 0)`` without it."""
    world = int(os.environ.get('WORLD_SIZE', 1))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get('RANK', 0)), world, int(os.environ.get('LOCAL_RANK', 0))


def init_distributed(device, rank, world_size, local_rank):
    """Join the process group that ``torchrun`` describes (:func:`launch_env`), if there is one,
    on ``device``, which must already be settled: NCCL and this process's GPU on CUDA, gloo on the
    CPU."""
    if device not in ('cuda', 'cpu'):
        raise RuntimeError(f'init_distributed needs a settled device, not {device!r}')
    if world_size <= 1:
        return
    if device == 'cuda':
        torch.cuda.set_device(local_rank)
    dist.init_process_group('nccl' if device == 'cuda' else 'gloo', timeout=datetime.timedelta(minutes=30))
    _store().set(f'process/{rank}', f'{socket.gethostname()} {os.getpid()}')
    dist.barrier()
    setup_for_distributed(rank == 0)


def setup_for_distributed(is_main):
    """Silence ``print`` on every rank but 0 (``print(..., force=True)`` still prints)."""
    builtin_print = builtins.print

    def print(*args, **kwargs):
        if kwargs.pop('force', False) or is_main:
            builtin_print(*args, **kwargs)
    builtins.print = print


def initialized():
    """Whether this process is in a process group."""
    return dist.is_available() and dist.is_initialized()


def world_size():
    return dist.get_world_size() if initialized() else 1


def rank():
    return dist.get_rank() if initialized() else 0


def barrier():
    if initialized():
        dist.barrier()


def is_main_process():
    return rank() == 0


@torch.no_grad()
def concat_all_gather(tensor, dim=0):
    """Concatenate ``tensor`` from every rank along ``dim`` (identity without a process group)."""
    if world_size() == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=dim)


def _store():
    return dist.distributed_c10d._get_default_store()


def dead_ranks():
    """The ranks on this machine whose process is gone, by the process ids they published."""
    store = _store()
    host, dead = socket.gethostname(), []
    for other in range(world_size()):
        try:
            their_host, pid = store.get(f'process/{other}').decode().split()
        except (RuntimeError, ValueError):  # the store itself is gone: its host died
            continue
        if their_host == host and not pid_alive(int(pid)):
            dead.append(other)
    return dead


class RankStopped(Exception):
    """This rank stops because another one died, or the launcher stopped it."""


class RankWatch:
    """Beats this rank's heart in the process group's store and watches the others': a rank
    silent for ``dead_after`` seconds (killed, crashed, its machine gone) makes every other rank
    stop with one line, rather than wait out the collective timeout. Also turns SIGTERM (what
    ``torchrun`` sends the other ranks when one fails) into :class:`RankStopped`, and leaves it
    ignored once the watched block has raised."""

    def __init__(self, heartbeat=HEARTBEAT, dead_after=DEAD_AFTER, grace=GRACE):
        self.heartbeat, self.dead_after, self.grace = heartbeat, dead_after, grace
        self.rank, self.world = rank(), world_size()
        self.reason = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name='rank-watch', daemon=True)

    def _watch(self):
        store = _store()
        seen = {r: (None, time.monotonic()) for r in range(self.world) if r != self.rank}
        while not self._stop.wait(self.heartbeat):
            try:
                store.add(f'heartbeat/{self.rank}', 1)
                for other, (count, since) in seen.items():
                    now = store.add(f'heartbeat/{other}', 0)
                    if now != count:
                        seen[other] = (now, time.monotonic())
                    elif time.monotonic() - since > self.dead_after:
                        self._abort(f'rank {other} has given no sign of life for {self.dead_after:.0f} s')
                        return
            except RuntimeError as e:  # the store went with the process that held it
                self._abort(f'the process group\'s store is unreachable ({str(e).splitlines()[0][:120]})')
                return

    def _abort(self, reason):
        self.reason = reason
        sys.stderr.write(f'rank {self.rank}: {reason}; stopping\n')
        # at the main thread itself, so that a blocking call there returns to the handler
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        if not self._stop.wait(self.grace):
            os._exit(1)  # the main thread is stuck in a collective with the dead rank

    def _on_sigterm(self, signum, frame):
        if self.reason is None:
            self.reason = 'stopped by SIGTERM'
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough; torchrun may send more
        raise RankStopped(self.reason)

    def collective_error(self, error):
        """Whether ``error`` (a RuntimeError) came from a collective with a rank that is gone."""
        text = str(error)
        return bool(self.reason or dead_ranks() or any(w in text for w in ('gloo', 'NCCL', 'Connection')))

    def explain(self, error):
        """One line for why this rank stopped on ``error``: which ranks died where that is known."""
        dead = dead_ranks()
        who = (f'rank {", ".join(map(str, dead))} died' if dead else self.reason
               or f'a collective failed ({str(error).splitlines()[0][:160]}): another rank died or was cut off')
        return f'rank {self.rank}: {who}'

    @contextlib.contextmanager
    def __call__(self):
        if self.world == 1:
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._thread.start()
        try:
            yield self
        except BaseException:
            # this rank is stopping: the launcher's SIGTERM, which follows a peer's death within
            # a tenth of a second, must not kill it before it has said why
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise
        else:
            signal.signal(signal.SIGTERM, previous)
        finally:
            self._stop.set()
