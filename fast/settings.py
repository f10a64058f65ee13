"""One object that says how pretraining computes the published function, resolved from the
arguments and checked once (docs/fast-path.md; docs/pretraining.md, "The same function, faster",
says what each switch changes)."""
import argparse
import functools
from dataclasses import dataclass, fields

import torch

from engine import device_views, train_step
from fast.model import FastCMD, computes
from models import METHODS, method_class
from fast.recurrence import KERNELS
from fast.step import GraphedStep, prefetch_views


def add_speed_arguments(parser):
    """``--speed`` and the individual switches it sets, which override it."""
    speed = parser.add_argument_group('speed (docs/fast-path.md; docs/pretraining.md: which options change the '
                                      'arithmetic)')
    speed.add_argument('--speed', default=None, choices=['reference', 'fast'],
                       help='fast: every switch below that fits the run (default on CUDA); reference: the plain '
                            'model code, one step at a time (default on the CPU). Switches given explicitly win')
    speed.add_argument('--amp', action='store_true',
                       help='mixed precision (changes the arithmetic; docs/pretraining.md)')
    speed.add_argument('--amp-dtype', default='bfloat16', choices=['bfloat16', 'float16'],
                       help='bfloat16 (CPU or CUDA), or float16 with gradient scaling (CUDA)')
    speed.add_argument('--tf32', default=None, action=argparse.BooleanOptionalAction,
                       help="TF32 matrix products on CUDA (default on: PyTorch's cuDNN default, so what the "
                            'published code computes on Ampere and newer GPUs); --no-tf32 for full float32')
    speed.add_argument('--gru-impl', default=None, choices=['fused', 'grouped'],
                       help='fused: one cuDNN call per encoder; grouped: all modalities advance together '
                            'frame by frame (same function; fast: grouped for one CUDA process)')
    speed.add_argument('--gru-kernels', default='auto', choices=list(KERNELS),
                       help="the grouped recurrence's kernels (fast/recurrence.py; same function)")
    speed.add_argument('--recurrent-fp16', default=None, action=argparse.BooleanOptionalAction,
                       help="round the grouped GRU layers' product operands to float16 (the forward's input "
                            'and recurrent products, the recurrent weights in the backward): TF32\'s 10-bit '
                            'fraction in half the bytes (the arithmetic of TF32, docs/fast-path.md; fast: on with '
                            'TF32 for the grouped recurrence without --amp)')
    speed.add_argument('--overlap-keys', default=None, action=argparse.BooleanOptionalAction,
                       help='compute the keys on a second CUDA stream beside the queries (same function; '
                            'fast: on for one CUDA process)')
    speed.add_argument('--cuda-graph', default=None, action=argparse.BooleanOptionalAction,
                       help='capture the whole training step as a CUDA graph (any method; same function; fast: on '
                            'for one CUDA process with an SGD step whose lr holds within an epoch (no --cos, no '
                            'warm-up), and for the GRU with --gru-impl grouped)')
    speed.add_argument('--augment-on', default=None, choices=['loader', 'device'],
                       help='where the views are made: per clip in the data-loader workers, or per batch '
                            'on the training device (default: device on CUDA, loader on CPU)')
    speed.add_argument('--self-check', default='on', choices=['on', 'off'],
                       help='before the first step, compute steps with the fast path and the reference code and '
                            'continue on --speed reference if they differ more than the arithmetic explains '
                            '(docs/fast-path.md)')


SWITCHES = ('speed', 'augment_on', 'gru_impl', 'tf32', 'gru_kernels', 'recurrent_fp16', 'overlap_keys', 'cuda_graph')


def fill_switches(values):
    """The speed switches ``values`` (a run's settings, the device and process count settled) leave
    unset, filled for the run: ``({name: value}, {name: why})``."""
    v, why = dict(values), {}
    cuda, single = v['device'] == 'cuda', v['world_size'] == 1
    where = f'{v["device"]}, {v["world_size"]} process{"es" if v["world_size"] > 1 else ""}'

    def fill(name, value):
        if v.get(name) is None:
            v[name] = value
            why[name] = f'speed default ({where}, --method {v["method"]})'

    fill('speed', 'fast' if cuda else 'reference')
    # the fast model and its captured step compute one method (fast/model.py); others run the reference code
    fast = v['speed'] == 'fast' and computes(method_class(v['method']))
    published_gru = v['encoder'] == 'gru' and v['gru_mode'] == 'published'
    fill('augment_on', 'device' if cuda else 'loader')
    # grouped pays off through the CUDA graph (one process); eager, cuDNN's fused call is faster
    fill('gru_impl', 'grouped' if fast and cuda and single and published_gru else 'fused')
    fill('tf32', cuda)
    fill('recurrent_fp16', fast and cuda and v['gru_impl'] == 'grouped' and v['tf32'] and not v['amp']
         and v['gru_kernels'] != 'triton')
    fill('overlap_keys', fast and cuda and single)
    # any method's step replays as a graph, but the GRU's only grouped (eager, cuDNN's fused call is faster)
    fill('cuda_graph', v['speed'] == 'fast' and cuda and single and not graph_problems(v)
         and (v['encoder'] != 'gru' or v['gru_impl'] == 'grouped'))
    return {k: v[k] for k in why}, why


def graph_problems(values):
    """Why a run's step (``values``: its settings) cannot replay as one CUDA graph, as sentences."""
    out = []
    if values.get('cos') or values.get('warmup_epochs'):
        # a graph captures its lr: one set at every step would be captured anew every step
        out.append('--cuda-graph replays one learning rate; --cos and a warm-up change it at every step')
    if values.get('optimizer') == 'adamw':
        out.append('--cuda-graph captures SGD steps, not --optimizer adamw')
    if values.get('amp') and values.get('amp_dtype') == 'float16':
        out.append('--cuda-graph cannot capture float16 gradient scaling; use --amp-dtype bfloat16')
    return out


@dataclass(frozen=True)
class SpeedSettings:
    speed: str
    amp: bool
    amp_dtype: str
    tf32: bool
    gru_impl: str
    gru_kernels: str
    recurrent_fp16: bool
    overlap_keys: bool
    cuda_graph: bool
    augment_on: str
    cuda: bool

    @classmethod
    def from_settings(cls, settings):
        """The switches of a run's resolved settings (:func:`fill_switches` filled those left
        unset), checked against each other and the run."""
        cuda = settings.device == 'cuda'
        speed = cls(cuda=cuda, **{f.name: getattr(settings, f.name) for f in fields(cls) if f.name != 'cuda'})
        published_gru = settings.encoder == 'gru' and settings.gru_mode == 'published'
        problems = speed.problems(settings.world_size == 1, published_gru, settings.method)
        if speed.cuda_graph:
            problems += graph_problems(vars(settings))
        if problems:
            raise SystemExit('error: ' + '\n       '.join(problems))
        return speed

    def problems(self, single, published_gru, method=None):
        """The settings that contradict each other or the run, as sentences."""
        out = []
        if not computes(method_class(method)) and (self.gru_impl == 'grouped' or self.overlap_keys):
            fast = next(name for name, cls in METHODS.items() if computes(cls))
            out.append(f'--gru-impl grouped and --overlap-keys compute --method {fast}, not {method}')
        if self.float16_scaling and not self.cuda:
            out.append('--amp --amp-dtype float16 needs --device cuda (bfloat16 also runs on the CPU)')
        if self.gru_impl == 'grouped' and not published_gru:
            out.append('--gru-impl grouped needs --encoder gru with --gru-mode published')
        if self.gru_kernels.startswith('triton') and not (self.cuda and self.gru_impl == 'grouped'):
            out.append(f'--gru-kernels {self.gru_kernels} needs --device cuda and --gru-impl grouped')
        if self.recurrent_fp16 and (self.gru_impl != 'grouped' or self.gru_kernels == 'triton' or self.amp):
            out.append('--recurrent-fp16 needs --gru-impl grouped, --gru-kernels auto, torch or triton-frame, '
                       'and float32 storage (no --amp)')
        if self.recurrent_fp16 and self.cuda and not self.tf32:
            out.append('--recurrent-fp16 rounds the products as TF32 does; it contradicts --no-tf32')
        if self.overlap_keys and not (self.cuda and single):
            out.append('--overlap-keys needs --device cuda and a single process')
        if self.cuda_graph and not (self.cuda and single):
            out.append('--cuda-graph needs --device cuda and a single process')
        return out

    @classmethod
    def reference_instead(cls, settings, source):
        """``settings`` on ``--speed reference``, keeping the precision and where the views are made
        (``--amp``, ``--tf32``, ``--augment-on``), each change recorded as from ``source``, and their
        switches: what a failed self-check leaves."""
        values = dict(vars(settings), speed='reference', gru_kernels='auto', gru_impl=None, recurrent_fp16=None,
                      overlap_keys=None, cuda_graph=None)
        values.update(fill_switches(values)[0])
        changed = {k: values[k] for k in SWITCHES if values[k] != getattr(settings, k)}
        settings = settings.replace(source, **changed)
        return settings, cls.from_settings(settings)

    @property
    def computes_differently(self):
        """Whether the training step is computed by other code than the reference model's (what
        the self-check compares; prefetching and fused SGD are the reference path's too on CUDA)."""
        return bool(self.model_options()) or self.cuda_graph

    @property
    def float16_scaling(self):
        return self.amp and self.amp_dtype == 'float16'

    def set_matmul_precision(self):
        if self.cuda:
            # explicit either way: PyTorch's own defaults differ between cuDNN (TF32) and cuBLAS (not)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.tf32

    def model_options(self):
        """Keyword arguments of :func:`models.build_method` that select :class:`fast.model.FastCMD`
        (none for the reference model)."""
        if self.gru_impl != 'grouped' and not self.overlap_keys:
            return {}
        return dict(cls=FastCMD, grouped=self.gru_impl == 'grouped', kernels=self.gru_kernels,
                    recurrent_fp16=self.recurrent_fp16, overlap_keys=self.overlap_keys)

    def optimizer_options(self):
        # fused: the same update in one kernel per group of tensors on CUDA. Not with float16
        # gradient scaling: a first step skipped for overflow would leave its momentum buffers unset.
        return dict(fused=self.cuda and not self.float16_scaling)

    def step(self, model, optimizer, scaler):
        """The training step: ``step(view_q, view_k) -> (loss, stats)``."""
        amp_dtype = getattr(torch, self.amp_dtype)
        if self.cuda_graph:
            return GraphedStep(model, optimizer, scaler, self.amp, amp_dtype)
        return functools.partial(train_step, model, optimizer, scaler, amp=self.amp, amp_dtype=amp_dtype)

    def views(self):
        """``views(loader, device, augment)``: the loader's batches of views on the training device."""
        return prefetch_views if self.speed == 'fast' else device_views
