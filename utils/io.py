"""Atomic file writing, JSON lines and CSV text, without heavy imports (data preparation uses it in worker
processes)."""
import csv
import errno
import io
import json
import os


class WriteError(Exception):
    """A file that could not be written (no space left, a file-size or disk quota limit, ...),
    said in one line that names it; the file it was to replace is as it was."""


def write_atomic(path, write, durable=True):
    """Call ``write(binary_file)`` on a temporary file, flush it to the disk, then rename it to
    ``path``: a crash, Ctrl-C or a full disk never leaves a torn file where the last good one was.
    ``durable=False`` skips waiting for the disk, for files made again by rerunning (generated
    data): the rename still never shows a half-written file."""
    def to_file(tmp):
        with open(tmp, 'wb') as raw:
            f = _Recording(raw)
            try:
                write(f)
            except Exception:
                if f.error is not None:  # torch.save and others hide the cause behind their own error
                    raise f.error from None
                raise
            raw.flush()
            if durable:
                os.fsync(raw.fileno())
    write_path_atomic(path, to_file, keep_extension=False)


def write_path_atomic(path, write, keep_extension=True):
    """The same for writers that take a file name: ``write(temporary_path)``, then the rename. The
    temporary file is ``<path>.tmp<PID>``, with ``path``'s extension after it where
    ``keep_extension`` (for writers that pick the format from the name). A write that fails
    removes its temporary file; an ``OSError`` becomes a :class:`WriteError` naming ``path``."""
    tmp = f'{path}.tmp{os.getpid()}' + (os.path.splitext(path)[1] if keep_extension else '')
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


def write_error(path, error):
    """The :class:`WriteError` of an ``OSError`` met while writing ``path``."""
    cause = error.strerror or str(error)
    if error.errno == errno.EFBIG:
        cause += ': beyond the file-size limit, ulimit -f'
    return WriteError(f'{path}: cannot be written ({cause})')


class _Recording:
    """A binary file whose first write error is kept, for writers that replace it by their own."""

    def __init__(self, raw):
        self.raw, self.error = raw, None

    def write(self, data):
        try:
            return self.raw.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self.raw, name)


def write_text_atomic(path, text, durable=True):
    write_atomic(path, lambda f: f.write(text.encode()), durable)


def csv_text(header, rows):
    """CSV text of a header row and rows, with plain newlines whatever the platform."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def read_json(path, label=''):
    """A JSON file's content; a file that cannot be read or parsed is a ValueError naming it
    (after ``label``, e.g. the argument that gave it)."""
    where = f'{label} {path}'.strip()
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise ValueError(f'{where}: cannot be read ({e.strerror})') from None
    except ValueError as e:
        raise ValueError(f'{where}: not JSON ({e})') from None


def append_jsonl(path, record):
    """Add a JSON line to ``path`` by rewriting it atomically: a kill never leaves half a line."""
    old = b''
    if os.path.exists(path):
        with open(path, 'rb') as f:
            old = f.read()
    if old and not old.endswith(b'\n'):
        old += b'\n'
    write_atomic(path, lambda f: f.write(old + (json.dumps(record) + '\n').encode()))


def pid_alive(pid):
    """Whether process ``pid`` still runs (to tell a live run's temporary files from a dead one's,
    or a live rank from a dead one); a killed process not yet reaped (a zombie) does not."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except (OSError, IndexError):  # gone, or no /proc (not Linux)
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
