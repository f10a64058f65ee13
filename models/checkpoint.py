"""Reading the authors' released CMD checkpoint layout (docs/checkpoints.md)."""

# Released key suffix of each modality: encoder_q, encoder_q_motion, encoder_q_bone, queue_motion, ...
RELEASED_SUFFIX = {'joint': '', 'motion': '_motion', 'bone': '_bone'}


def strip_module(state):
    """Drop a DataParallel/DDP ``module.`` prefix."""
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def released_encoder_state(state, branch, modality):
    """The entries of one released encoder (``branch`` 'q' or 'k'), prefix removed."""
    prefix = f'encoder_{branch}{RELEASED_SUFFIX[modality]}.'
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
