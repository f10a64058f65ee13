"""The fast path checked on the machine it runs on (docs/fast-path.md, "The self-check").

Before a run's first step, the same training steps are computed from the same state on the same
batch by the reference code and by the fast path, each on a copy; the run keeps the fast path
only if the two agree as closely as the arithmetic explains. A user's GPU, driver, CUDA and Triton
are never the ones the fast path was measured on.
"""
import copy
import math
import time
from dataclasses import dataclass

import torch

from engine import train_step
from utils.rng import get_rng_state, set_rng_state

# Relative differences (norm of the difference over the norm of the reference) that float32
# computed in another order stays far below; a wrong kernel or a stale graph lands far above.
FLOAT32_FLOOR = 1e-3
# With TF32, float16 operands or --amp, the fast path may differ from full float32 by at most this
# many times what the reference code's own rounding in the run's precision makes it differ: float16
# operands err at most as TF32 does (docs/fast-path.md, "Float16 operands").
ROUNDING_FACTOR = 4.0


@dataclass
class CheckResult:
    passed: bool
    reason: str
    seconds: float

    def line(self):
        verdict = 'passed' if self.passed else 'FAILED'
        return f'self-check of the fast path {verdict} in {self.seconds:.1f} s: {self.reason}'


def _state(model):
    """What a training step changes: every floating tensor of the model's state (parameters,
    BatchNorm statistics, queues), grouped by the first two parts of their names
    (``encoder_q.motion``, ``queue``)."""
    groups = {}
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            groups.setdefault('.'.join(name.split('.')[:2]), []).append(value.detach().double().flatten())
    return {key: torch.cat(values) for key, values in groups.items()}


def train_copy(model, optimizer, scaler, make_step, views, steps, rng):
    """Run ``steps`` training steps of ``make_step(model, optimizer, scaler)`` on ``views`` from
    RNG state ``rng``; returns the losses and what every step changed, as float64 on the CPU
    (``model``, ``optimizer`` and ``scaler`` are copies, changed in place)."""
    set_rng_state(rng)
    before = _state(model)
    step = make_step(model, optimizer, scaler)
    losses = [step(views)[0].detach().double().clone() for _ in range(steps)]
    after = _state(model)
    out = {'loss': torch.stack(losses).cpu()}
    out.update({key: (after[key] - before[key]).cpu() for key in before})
    return out


def relative_differences(result, reference):
    """``|result - reference| / |reference|`` per quantity (the absolute difference where the
    reference is zero); ``inf`` where ``result`` is not finite."""
    out = {}
    for key, ref in reference.items():
        got = result[key]
        if not torch.isfinite(got).all():
            out[key] = math.inf
            continue
        norm = float(torch.linalg.vector_norm(ref))
        diff = float(torch.linalg.vector_norm(got - ref))
        out[key] = diff / norm if norm > 0 else diff
    return out


def compare(fast, reference, rounding=None):
    """The verdict on ``fast`` against ``reference`` (computed in full float32), given
    ``rounding``: the reference code's own differences in the run's precision, or None when the
    run computes in full float32. Returns ``(passed, reason)``."""
    if not all(torch.isfinite(v).all() for v in reference.values()):
        return True, 'the reference itself gives non-finite values on this batch; nothing to compare'
    noise = max(rounding.values()) if rounding else 0.0
    tolerance = max(FLOAT32_FLOOR, ROUNDING_FACTOR * noise)
    differences = relative_differences(fast, reference)
    worst = max(differences, key=differences.get)
    how = (f'tolerance {tolerance:.2g}: {ROUNDING_FACTOR:g} x the reference\'s own rounding {noise:.2g}'
           if tolerance > FLOAT32_FLOOR else f'tolerance {tolerance:.2g}')
    broken = [key for key, value in differences.items() if not math.isfinite(value)]
    if broken:
        return False, f'not finite on the fast path: {", ".join(broken)}'
    said = f'largest relative difference {differences[worst]:.2g} in {worst} ({how})'
    return differences[worst] <= tolerance, said


def self_check(model, optimizer, scaler, settings, build_reference, make_optimizer, views):
    """Check the fast path of ``settings`` (a :class:`fast.settings.SpeedSettings`) from the run's
    ``model`` (its fast model), ``optimizer`` and ``scaler`` as they are now, on the batch's ``views``.
    ``build_reference()`` makes the reference model on the same device; ``make_optimizer(model)``
    the run's optimizer for a model. Nothing of the run changes: its model, optimizer, scaler and
    RNG states are as before. Returns a :class:`CheckResult`; an exception on the fast path fails."""
    start = time.perf_counter()
    rng = get_rng_state()
    # the captured graph replays from its third eager step on: check a replay too
    steps = 4 if settings.cuda_graph else 1

    def copies(target):
        opt = make_optimizer(target)
        opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        return target, opt, copy.deepcopy(scaler)

    def reference_copies():
        target = build_reference()
        target.load_state_dict(model.state_dict())
        return copies(target)

    def reference_step(amp):
        dtype = getattr(torch, settings.amp_dtype)
        return lambda m, o, s: lambda views: train_step(m, o, s, views, amp=amp, amp_dtype=dtype)

    try:
        full = _full_float32(settings)
        with full:
            reference = train_copy(*reference_copies(), reference_step(False), views, steps, rng)
        rounding = None
        if full.changes or settings.amp:
            run_precision = train_copy(*reference_copies(), reference_step(settings.amp), views, steps, rng)
            rounding = relative_differences(run_precision, reference)
        try:
            fast = train_copy(*copies(copy.deepcopy(model)), settings.step, views, steps, rng)
        except Exception as e:  # whatever the fast path raises on this machine is its failure
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ''
            return CheckResult(False, f'the fast path raised {type(e).__name__}: {first}', time.perf_counter() - start)
        passed, reason = compare(fast, reference, rounding)
        return CheckResult(passed, reason, time.perf_counter() - start)
    finally:
        set_rng_state(rng)
        settings.set_matmul_precision()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def check_before_run(model, optimizer, scaler, speed, args, views, build_reference, build_training, optimizer_for):
    """The self-check before a run's first step: returns the run's settings, speed settings, model,
    optimizer and scaler it goes on with, on the reference code if the fast path failed it (on any
    rank: all ranks go on alike). ``build_reference()`` builds the reference model on the run's
    device; ``build_training(args, speed)`` a run's model (DDP-wrapped where distributed), optimizer
    and scaler; ``optimizer_for(model, args, speed)`` an optimizer."""
    from fast.settings import SpeedSettings  # (fast.settings builds on this module)
    result = self_check(model.module if args.distributed else model, optimizer, scaler, speed, build_reference,
                        lambda m: optimizer_for(m, args, speed), views)
    if args.distributed:
        verdicts = [None] * args.world_size
        torch.distributed.all_gather_object(verdicts, (result.passed, result.reason))
        failed = [r for r, (passed, _) in enumerate(verdicts) if not passed]
        if failed and result.passed:
            result.passed, result.reason = False, f'rank {failed[0]}: {verdicts[failed[0]][1]}'
    if result.passed:
        print(result.line())
        return args, speed, model, optimizer, scaler
    print(f'{result.line()}; continuing on --speed reference (recorded as speed_fallback in args.json and the '
          'checkpoints; --self-check off skips the check)')
    args, speed = SpeedSettings.reference_instead(args.replace('self-check', speed_fallback=result.reason),
                                                  'self-check: the fast path differed')
    reference, reference_optimizer, _ = build_training(args, speed)
    reference.load_state_dict(model.state_dict())
    reference_optimizer.load_state_dict(optimizer.state_dict())
    return args, speed, reference, reference_optimizer, scaler


class _full_float32:
    """TF32 off meanwhile (a no-op off CUDA); ``changes``: whether the run computes otherwise."""

    def __init__(self, settings):
        self.settings, self.changes = settings, settings.cuda and settings.tf32

    def __enter__(self):
        if self.changes:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        self.settings.set_matmul_precision()
        return False
