"""Reading and writing the authors' released CMD checkpoint layout (docs/checkpoints.md)."""
import torch

# Released key suffix of each modality: encoder_q, encoder_q_motion, encoder_q_bone, queue_motion, ...
RELEASED_SUFFIX = {'joint': '', 'motion': '_motion', 'bone': '_bone'}


def strip_module(state):
    """Drop a DataParallel/DDP ``module.`` prefix."""
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def released_encoder_state(state, branch, modality):
    """The entries of one released encoder (``branch`` 'q' or 'k'), prefix removed."""
    prefix = f'encoder_{branch}{RELEASED_SUFFIX[modality]}.'
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@torch.no_grad()
def load_released_cmd(model, state):
    """Load a released CMD ``state_dict`` (GRU encoders) into a :class:`models.cmd.CMD`."""
    state = strip_module(state)
    for m, suffix in ((m, RELEASED_SUFFIX[m]) for m in model.modalities):
        for branch, encoders in (('q', model.encoder_q), ('k', model.encoder_k)):
            sub = released_encoder_state(state, branch, m)
            if not sub:
                raise KeyError(f'no encoder_{branch}{suffix}.* entries in the released checkpoint')
            missing, unexpected = encoders[m].load_released_state_dict(sub)
            if missing or unexpected:
                raise KeyError(f'encoder_{branch}{suffix}: missing {missing}, unexpected {unexpected}')
    for i, m in enumerate(model.modalities):
        model.queue[i].copy_(state[f'queue{RELEASED_SUFFIX[m]}'])
    model.queue_ptr.copy_(state['queue_ptr'].view(1))


def released_cmd_state(model):
    """A :class:`models.cmd.CMD` with GRU encoders in the released key layout."""
    state = {}
    for i, m in enumerate(model.modalities):
        suffix = RELEASED_SUFFIX[m]
        for branch, encoders in (('q', model.encoder_q), ('k', model.encoder_k)):
            for k, v in encoders[m].released_state_dict().items():
                state[f'encoder_{branch}{suffix}.{k}'] = v
        state[f'queue{suffix}'] = model.queue[i].clone()
        state[f'queue_ptr{suffix}'] = model.queue_ptr.clone()
    return state
