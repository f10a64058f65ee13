"""``results.json``: what was evaluated, how, and what it scored."""
import json
import os

from models import encoder_of
from utils.io import write_text_atomic
from utils.run import git_revision, plain


def save_results(output_path, protocol, args, info, streams, settings, **extra):
    """Write ``results.json``: what was evaluated (``info`` from
    :func:`evaluation.pretrained.load_encoders`, and the encoder's architecture, a random one's
    too; none for raw coordinates), how (``settings``: names of ``args`` or a dict),
    and the accuracies and whatever else ``extra`` holds; for settings named from ``args``, where
    each value came from."""
    known = getattr(args, 'sources', {})
    named = [] if isinstance(settings, dict) else list(settings)
    named += ['stream', 'offline_step']  # what was evaluated and how every clip was prepared, whatever the protocol
    given = settings if isinstance(settings, dict) else {}
    settings = {**given, **{k: getattr(args, k, None) for k in named}}
    sources = {k: known[k] for k in named if k in known}
    record = {'protocol': protocol, 'dataset': args.dataset, 'benchmark': args.protocol,
              'checkpoint': info['checkpoint'], 'checkpoint_sha256': info['sha256'],
              'encoder_kind': info['kind'],
              'encoder': None if info['kind'] == 'raw' else plain(encoder_of(vars(args))),  # what was evaluated
              'pretrain_dataset': info['pretrain_args'].get('dataset'), 'mapping': info.get('mapping'),
              'pretrain_epoch': info['epoch'], 'streams': streams,
              'settings': {**settings, 'frames': info['frames']}, 'sources': sources,
              **extra, 'git_revision': git_revision()}
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    write_text_atomic(output_path, json.dumps(record, indent=1))
    print(f'wrote {output_path}')
    return record
