"""A pretraining run's output folder: never mixed with another run, cleaned of what a killed run
left behind, and resumed from the newest checkpoint that reads."""
import glob
import json
import os
import re
import time

from utils.checkpoint_io import read_checkpoint
from utils.io import append_jsonl, pid_alive, write_text_atomic

LATEST = 'checkpoint.pth'
RUN_FILES = (LATEST, 'log.txt', 'args.json')


def remove_stale_temporaries(folder):
    """Delete ``*.tmp<PID>`` files (interrupted atomic writes; figures keep an extension after it)
    whose process is gone."""
    for path in glob.glob(os.path.join(glob.escape(folder), '*.tmp*')):
        match = re.search(r'\.tmp(\d+)(\.\w+)?$', path)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            os.remove(path)


def snapshots(folder):
    """The numbered checkpoints, newest first."""
    return sorted(glob.glob(os.path.join(glob.escape(folder), 'checkpoint_[0-9][0-9][0-9][0-9].pth')), reverse=True)


def holds_run(folder):
    return any(os.path.exists(os.path.join(folder, f)) for f in RUN_FILES) or bool(snapshots(folder))


def claim(folder, resume, auto_resume, overwrite):
    """Make ``folder`` ready for a run, refusing to mix two runs in it. With ``overwrite`` an
    earlier run is moved aside (returns where to); without it, the folder must be new or the
    run must continue it."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise SystemExit(f'error: --output-dir {folder} is a file, not a folder')
    if not os.path.isdir(folder):
        return None
    remove_stale_temporaries(folder)
    if not holds_run(folder) or resume or auto_resume:
        return None
    if not overwrite:
        raise SystemExit(f'error: --output-dir {folder} already holds a run. Continue it with --auto-resume, '
                         f'start a new one in another --output-dir, or pass --overwrite to move the old run '
                         f'aside (to {folder.rstrip(os.sep)}.replaced-<time>)')
    aside = f'{folder.rstrip(os.sep)}.replaced-{time.strftime("%Y%m%d-%H%M%S")}'
    os.replace(folder, aside)
    return aside


def find_resume(folder):
    """The checkpoint ``--auto-resume`` continues from: ``checkpoint.pth`` or, when that does not
    read, the newest numbered snapshot that does (saying so). Returns (path, checkpoint) or
    (None, None) for a new run."""
    candidates = [os.path.join(folder, LATEST)] + snapshots(folder)
    failures = []
    for path in candidates:
        if not os.path.isfile(path):
            continue
        try:
            checkpoint = read_checkpoint(path, '--auto-resume:')
        except ValueError as e:
            failures.append(str(e))
            print(f'{e}; trying the next snapshot')
            continue
        if failures:
            print(f'--auto-resume: continuing from {path} (epoch {checkpoint.get("epoch")})')
        return path, checkpoint
    if failures:
        raise ValueError(f'--auto-resume: no checkpoint in {folder} reads ({len(failures)} tried)')
    return None, None


def reconcile_log(folder, epoch, record):
    """Make ``log.txt`` end at the resumed checkpoint's epoch: lines of later epochs set aside
    (:func:`set_aside_log`), and the checkpoint's own line (``record``) added if a kill came
    between writing the checkpoint and its log line."""
    set_aside_log(folder, epoch)
    path = os.path.join(folder, 'log.txt')
    if not isinstance(record, dict) or record.get('epoch') != epoch - 1:
        return
    if not any(entry.get('epoch') == epoch - 1 for entry in _log_entries(path)):
        append_jsonl(path, record)
        print(f'restored the log line of epoch {epoch - 1} from the checkpoint (the run was stopped before writing it)')


def _log_entries(path):
    if not os.path.isfile(path):
        return []
    entries = []
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def set_aside_log(folder, epoch):
    """Move the log lines of epochs >= ``epoch`` (written after the checkpoint being resumed) to
    ``log.txt.set-aside-<time>``, so the resumed run does not repeat them."""
    path = os.path.join(folder, 'log.txt')
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    keep, later = [], []
    for line in lines:
        try:
            later_epoch = json.loads(line).get('epoch', -1) >= epoch
        except (ValueError, AttributeError):
            later_epoch = False  # not ours to judge: kept where it was
        (later if later_epoch else keep).append(line)
    if not later:
        return None
    aside = f'{path}.set-aside-{time.strftime("%Y%m%d-%H%M%S")}'
    write_text_atomic(aside, '\n'.join(later) + '\n')
    write_text_atomic(path, ''.join(line + '\n' for line in keep))
    print(f'set aside {len(later)} log line(s) of epochs from {epoch} on, written after that checkpoint: {aside}')
    return aside
