"""Atomic file writing and JSON lines, without heavy imports (data preparation uses it in worker
processes)."""
import json
import os


def write_atomic(path, write):
    """Call ``write(binary_file)`` on a temporary file, then rename it to ``path``: a crash or
    Ctrl-C never leaves a torn file where the last good one was."""
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        write(f)
    os.replace(tmp, path)


def write_text_atomic(path, text):
    write_atomic(path, lambda f: f.write(text.encode()))


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
