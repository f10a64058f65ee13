"""Seeding, and every RNG's state as plain tensors and values (for exact resume)."""
import random

import numpy as np
import torch


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state():
    """Every RNG the run draws from, as tensors and plain values (loads with weights_only)."""
    version, state, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    out = {'torch': torch.get_rng_state(),
           'python': {'version': version, 'state': torch.tensor(state, dtype=torch.int64), 'gauss': gauss},
           'numpy': {'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                     'has_gauss': int(has_gauss), 'cached': float(cached)}}
    if torch.cuda.is_available():
        out['cuda'] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    py = state['python']
    random.setstate((py['version'], tuple(py['state'].tolist()), py['gauss']))
    nps = state['numpy']
    np.random.set_state(('MT19937', nps['keys'].numpy().astype(np.uint32), nps['pos'], nps['has_gauss'], nps['cached']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
