"""Atomic file writing and JSON lines, without heavy imports (data preparation uses it in worker
processes)."""
import json
import os


def write_atomic(path, write):
    """Call ``write(binary_file)`` on a temporary file, then rename it to ``path``: a crash or
    Ctrl-C never leaves a torn file where the last good one was."""
    def to_file(tmp):
        with open(tmp, 'wb') as f:
            write(f)
    write_path_atomic(path, to_file, keep_extension=False)


def write_path_atomic(path, write, keep_extension=True):
    """The same for writers that take a file name: ``write(temporary_path)``, then the rename. The
    temporary file is ``<path>.tmp<PID>``, with ``path``'s extension after it where
    ``keep_extension`` (for writers that pick the format from the name)."""
    tmp = f'{path}.tmp{os.getpid()}' + (os.path.splitext(path)[1] if keep_extension else '')
    write(tmp)
    os.replace(tmp, path)


def write_text_atomic(path, text):
    write_atomic(path, lambda f: f.write(text.encode()))


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
    with open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')


def pid_alive(pid):
    """Whether process ``pid`` still runs (to tell a live run's temporary files from a dead one's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
