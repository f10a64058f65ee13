"""``results.json``: what was evaluated, how, and what it scored."""
import json
import os

from utils.io import write_text_atomic
from utils.run import git_revision


def save_results(output_path, protocol, args, info, streams, settings, **extra):
    """Write ``results.json``: what was evaluated (``info`` from
    :func:`evaluation.pretrained.load_encoders`), how (``settings``: names of ``args`` or a dict),
    and the accuracies and whatever else ``extra`` holds; for settings named from ``args``, where
    each value came from."""
    sources = {}
    if not isinstance(settings, dict):
        sources = {k: args.sources[k] for k in settings if k in getattr(args, 'sources', {})}
        settings = {k: getattr(args, k) for k in settings}
    record = {'protocol': protocol, 'dataset': args.dataset, 'benchmark': args.protocol,
              'checkpoint': info['checkpoint'], 'checkpoint_sha256': info['sha256'],
              'encoder_kind': info['kind'], 'pretrain_dataset': info['pretrain_args'].get('dataset'),
              'pretrain_epoch': info['epoch'], 'streams': streams,
              'settings': {**settings, 'frames': info['frames']}, 'sources': sources,
              **extra, 'git_revision': git_revision()}
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    write_text_atomic(output_path, json.dumps(record, indent=1))
    print(f'wrote {output_path}')
    return record
