"""The one resolver of a run's settings (:class:`options.settings.Resolution`, its layers declared
in ``options/presets.py`` and by the encoders and methods): a pretraining run's here, an
evaluation's in ``evaluation/common.py``, a timeline's in ``timeline.py``, each value with where it
came from."""
from evaluation.monitor import knn_every_default
from fast.settings import SpeedSettings, fill_switches
from feeder.info import dataset_info
from feeder.pool import pooled_parts, read_pool
from models import DEFAULT_METHOD, ENCODERS, method_class, method_settings, readers
from options.args import check_places, format_default
from options.presets import default_choice, reads, recipe
from options.settings import Resolution


def pretraining_settings(args, parser, dataset, device, launch=(0, 1, 0), recorded=None, resume=None, parts=None):
    """Every setting of a pretraining run (``args``, parsed by ``parser``), resolved once, as a
    frozen :class:`options.settings.Settings` whose ``sources`` say where each value came from: the
    command line; for a resumed run (``resume``: its checkpoint, ``recorded``: the args it records,
    with their sources) what it started with, so that it continues as it started even where a
    preset has changed since; the recipe (:func:`options.presets.recipe`: published, encoder,
    small-data preset, dataset, small-data rules, method); then what follows from them: ``device``
    (settled), the processes (``launch``: rank, world size, local rank), what the method resolves
    (``Method.resolve``) and the speed switches (:func:`fast.settings.fill_switches`). A flag the
    run's method and encoder do not read is refused (:func:`refuse_unread`). Returns the settings
    and their :class:`fast.settings.SpeedSettings`. ``parts``: the pool as the run reads it
    (:func:`feeder.pool.pooled_parts`), where the caller has it."""
    check_places(args, dataset)
    resolution = Resolution(args, parser)
    rank, world_size, local_rank = launch
    past = recorded or {}
    method, encoder = args.method or past.get('method'), args.encoder or past.get('encoder')
    chose = None
    if method is None:  # checkpoints that predate methods are the default method's
        method, encoder, chose = default_choice(dataset, args.protocol) if encoder is None and recorded is None \
            else (DEFAULT_METHOD, encoder, None)
    defaults, why = recipe(dataset, encoder, method, args.protocol, world_size, recorded,
                           batch_size=args.batch_size, epochs=args.epochs)
    refuse_unread(resolution.values, reads(defaults['encoder'], method), method, defaults['encoder'], args.drop_unread)
    resolution.drop(own_setting_names() - set(defaults))  # the settings of other methods and encoders
    values, set_ = resolution.values, resolution.set
    for key, value in defaults.items():
        resolution.layer({key: value}, why[key])
    if args.method is None:  # a resumed run keeps where its method came from
        set_('method', method, (past.get('sources') or {}).get('method') or
             ('checkpoint' if past.get('method') else chose or 'default'))
    if chose:
        set_('encoder', encoder, chose)
    set_('device', device, resolution.sources['device'] if args.device else 'CUDA available' if device == 'cuda'
         else 'no CUDA device')
    for key, value in zip(('rank', 'world_size', 'local_rank', 'distributed'),
                          (rank, world_size, local_rank, world_size > 1)):
        set_(key, value, 'launch environment (torchrun)' if world_size > 1 else 'one process')
    if values['min_crop'] is None:
        set_('min_crop', values['frames'], 'the frames')
    for key, (value, reason) in method_class(method).resolve(values).items():
        set_(key, value, reason)
    kept = past.get('sources') or {}
    if values.get('pool') is None and past.get('pool'):  # a resumed run pools what it pooled
        set_('pool', past['pool'], kept.get('pool', 'checkpoint'))
    if values.get('pool_sampling') is None:
        set_('pool_sampling', past.get('pool_sampling') or 'proportional',
             kept.get('pool_sampling', 'checkpoint') if past.get('pool_sampling') else 'default')
    if values['pool_sampling'] == 'balanced' and not values.get('pool'):
        raise SystemExit('error: --pool-sampling balanced shares the epochs between pooled benchmarks; give --pool')
    if values.get('layout') is None and past.get('layout'):  # a resumed run keeps its skeleton
        set_('layout', past['layout'], kept.get('layout', 'checkpoint'))
    if values.get('pool') or values.get('layout'):  # what each benchmark's clips become (feeder/joints.py)
        parts = parts or pooled_parts(read_pool(values.get('pool') or []), values['data_root'], values['protocol'],
                                      dataset_info(values['dataset'], values['data_root']), dataset)
        set_('pool_mapping', {name: None if adapt is None else adapt.record
                              for name, _, _, adapt in (parts if values.get('layout') else parts[1:])},
             "the pooled benchmarks' joint maps" + (' and the run\'s own, into --layout' if values.get('layout') else ''))
    if values['knn_every'] is None:
        set_('knn_every', knn_every_default(values['epochs']), 'a tenth of the run')
    values['modalities'] = list(dict.fromkeys(values['modalities']))
    if resume and not args.resume:
        set_('resume', resume, '--auto-resume: the newest checkpoint that reads')
    # a resumed run that fell back to the reference code continues there unless --speed says otherwise
    fell_back = past.get('speed_fallback') if args.speed is None else None
    set_('speed_fallback', fell_back, 'checkpoint' if fell_back else 'not set')
    switches, reasons = fill_switches(values)
    for key, value in switches.items():
        set_(key, value, reasons[key])
    settings = resolution.settings()
    if fell_back:
        return SpeedSettings.reference_instead(settings, 'checkpoint: its self-check fell back to the reference code')
    return settings, SpeedSettings.from_settings(settings)


def own_setting_names():
    """Every encoder's and method's own settings' names: the flags that one run may not read."""
    return {name for name in method_settings()} | {s.name for cls in ENCODERS.values() for s in cls.SETTINGS}


def refuse_unread(values, read, method, encoder, drop=False):
    """A flag given on the command line (in ``values``) that the run's ``method`` and ``encoder``
    do not read is refused, in one line naming those that read it; with ``drop``, a line says it is
    dropped."""
    unread = [k for k in own_setting_names() - read if values.get(k) is not None]
    if not unread:
        return
    if drop:
        print(f'--drop-unread: --method {method} with --encoder {encoder} does not read '
              + ', '.join(f'--{k.replace("_", "-")}' for k in sorted(unread)) + '; dropped')
        return
    lines = []
    for key in sorted(unread):
        methods, encoders = readers(key)
        who = ', '.join([f'--method {m}' for m in methods] + [f'--encoder {e}' for e in encoders])
        lines.append(f'--{key.replace("_", "-")} is read by {who}, not by --method {method} with --encoder {encoder}')
    raise SystemExit('error: ' + '\n       '.join(lines))


def rules_report(settings):
    """A line per setting the small-data rules gave, with why."""
    return [f'  {key} {format_default(getattr(settings, key))}: {source[len("small-data rule: "):]}'
            for key, source in settings.ruled()]


