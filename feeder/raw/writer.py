"""The prepared arrays on disk: allocated zero-filled under a staging folder, written a row at a
time by worker processes as each sample is read and normalised, compacted where samples were left
out, and moved into place only when complete (docs/data.md)."""
import ctypes
import os
import re
import shutil
from multiprocessing import get_context
from typing import NamedTuple

import numpy as np

from feeder.info import MAX_FRAMES
from feeder.raw.custom import CustomDataError
from feeder.raw.normalize import fit_frames, normalize_sample
from feeder.raw.readers import DataFormatError
from feeder.raw.sources import SOURCES
from utils.io import pid_alive, write_error


class Outcome(NamedTuple):
    """What became of one sample: written with its stored ``length``, or left out (``reason``)."""
    length: int = None
    reason: str = None
    detail: str = None
    label: int = None


class _Output:
    """A prepared array's file, written a row at a time with ``pwrite``: a fresh page costs a
    copy rather than a fault on a memory map (``benchmarks/RESULTS.md``)."""

    def __init__(self, path):
        array = np.load(path, mmap_mode='r')
        self.row_shape, self.offset = array.shape[1:], array.offset
        self.row_bytes = array[0].nbytes if len(array) else 0
        del array
        self.path, self.fd = path, os.open(path, os.O_WRONLY)

    def write(self, row, values):
        values = np.ascontiguousarray(values, dtype=np.float32)
        if values.shape != self.row_shape:
            raise ValueError(f'a row of shape {values.shape} for an output of rows {self.row_shape}')
        try:
            os.pwrite(self.fd, values, self.offset + row * self.row_bytes)
        except OSError as e:  # the disk is full, or a file-size limit: said with the file's name
            raise write_error(self.path, e) from None

    def close(self):
        os.close(self.fd)


_OUTPUTS = {}  # per process: the outputs it has open


def _output(path):
    if path not in _OUTPUTS:
        _OUTPUTS[path] = _Output(path)
    return _OUTPUTS[path]


def close_outputs():
    for output in _OUTPUTS.values():
        output.close()
    _OUTPUTS.clear()


def process_task(job):
    """Read, normalise and write one task (worker side); one :class:`Outcome` per sample."""
    task, outputs, prep = job
    source = SOURCES[task.source]
    try:
        clips = source.read(task, prep)
    except (DataFormatError, CustomDataError, OSError) as e:
        return [Outcome(reason='bad file', detail=str(e))] * len(task.samples)
    return [_write_sample(sample, clip, source, outputs, prep) for sample, clip in zip(task.samples, clips)]


def _write_sample(sample, clip, source, outputs, prep):
    data, length = clip.data, clip.length
    if length < source.min_frames:
        return Outcome(reason='too short', detail=f'{sample.name} (length {length}, needs {source.min_frames})')
    if not data[:, :length].any():
        return Outcome(reason='no body', detail=sample.name)
    data = fit_frames(data, MAX_FRAMES, resample=source.resample)
    if source.resample:
        length = min(length, MAX_FRAMES)
    full = np.zeros((prep.persons, MAX_FRAMES) + data.shape[2:], dtype=np.float32)
    full[:len(data), :data.shape[1]] = data[:prep.persons]
    if source.normalised:  # frames past its end repeat it
        length = min(length, MAX_FRAMES)
        full[:, length:] = full[:, np.arange(length, MAX_FRAMES) % length]
    else:
        normalize_sample(full, prep.layout)
    out = np.ascontiguousarray(full.transpose(3, 1, 2, 0))   # once for all the outputs it goes to
    for key, row in sample.rows.items():
        _output(outputs[key]).write(row, out)
    return Outcome(length=length, label=clip.label)


def allocate(staging, info, counts):
    """The output arrays, zero-filled: {(benchmark, part): path}."""
    outputs = {}
    for (benchmark, part), n in counts.items():
        os.makedirs(os.path.join(staging, benchmark), exist_ok=True)
        path = os.path.join(staging, benchmark, f'{part}_data_joint.npy')
        shape = (n, len(info.channels), MAX_FRAMES, info.layout.num_joints, info.persons)
        try:
            np.lib.format.open_memmap(path, mode='w+', dtype=np.float32, shape=shape).flush()
        except OSError as e:
            raise write_error(path, e) from None
        outputs[(benchmark, part)] = path
    return outputs


def compact(path, keep):
    """Rewrite ``path`` with only the rows in ``keep`` (used when files were skipped)."""
    src = np.load(path, mmap_mode='r')
    tmp = path + '.compact'
    try:
        dst = np.lib.format.open_memmap(tmp, mode='w+', dtype=src.dtype, shape=(len(keep),) + src.shape[1:])
        for start in range(0, len(keep), 256):
            dst[start:start + 256] = src[keep[start:start + 256]]
        dst.flush()
    except OSError as e:
        raise write_error(path, e) from None
    del src, dst
    os.replace(tmp, path)


def remove_stale_staging(out_dir):
    """Delete the staging folders (``.prepare-PID``) and replaced benchmarks (``NAME.old-PID``)
    that a killed run left behind."""
    for name in os.listdir(out_dir):
        match = re.fullmatch(r'\.prepare-(\d+)|.+\.old-(\d+)', name)
        if match and not pid_alive(int(match.group(1) or match.group(2))):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def replace_dir(src, dst):
    """Move a finished benchmark folder into place, replacing an older one."""
    old = None
    if os.path.exists(dst):
        old = f'{dst}.old-{os.getpid()}'
        os.replace(dst, old)
    os.replace(src, dst)
    if old:
        shutil.rmtree(old)


def keep_freed_memory():
    """Let this process keep the memory it frees (glibc only; elsewhere a no-op).

    By default glibc hands every large block back to the system when it is freed, and the next
    file's arrays of the same size then take fresh pages, each one faulted in and zeroed: nearly
    half the cost of parsing a file by array operations here (``benchmarks/RESULTS.md``). A
    worker allocates the same sizes file after file, so it keeps them instead.
    """
    try:
        mallopt = ctypes.CDLL('libc.so.6').mallopt
    except (OSError, AttributeError):
        return
    # M_MMAP_THRESHOLD: blocks up to 32 MB (glibc's maximum) come from the heap; M_TRIM_THRESHOLD:
    # free memory at the heap's top is kept up to 256 MB
    mallopt(-3, 32 << 20)
    mallopt(-1, 256 << 20)


class pool:
    """``map`` over worker processes (ordered results, streamed), or in-process for 0 workers."""

    def __init__(self, workers):
        self.workers = workers
        self.pool = None

    def __enter__(self):
        if self.workers <= 0:
            return map
        self.pool = get_context('fork').Pool(self.workers, initializer=keep_freed_memory)
        return lambda fn, jobs: self.pool.imap(fn, jobs, chunksize=4)

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()
