"""What every entry script does at start and end: the git revision and sorted arguments, plain
arguments for checkpoints, and one-line errors instead of tracebacks."""
import os
import subprocess
import sys

from utils.io import WriteError


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
    """Print the git revision and the sorted arguments (rank 0 only, like every print), each with
    where its value came from where ``args`` records it (:class:`options.settings.Settings`)."""
    print(f'git revision: {git_revision()}')
    sources = getattr(args, 'sources', {})
    print('\n'.join(f'{k}: {v}' + (f'  ({sources[k]})' if k in sources else '') for k, v in sorted(vars(args).items())))


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
    except (FileNotFoundError, ValueError, FloatingPointError, WriteError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
