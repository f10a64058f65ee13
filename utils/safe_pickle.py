"""Reading pickles without running code: only the classes and functions on an allow-list can be
rebuilt, so a crafted file is refused before anything in it runs. Plain containers, strings and
numbers need nothing from the list."""
import importlib
import io
import pickle

# numpy 2 moved numpy.core to numpy._core; files written by either name the one they knew
_NUMPY_CORE = ('numpy.core.', 'numpy._core.')

# numpy scalars (np.int64(3), ...): what label files written with numpy labels hold
NUMPY_SCALARS = frozenset({
    ('numpy.core.multiarray', 'scalar'), ('numpy', 'dtype'), ('_codecs', 'encode')})
# and numpy arrays (pickle protocols 2 to 5, written by numpy 1 or 2)
NUMPY_ARRAYS = NUMPY_SCALARS | frozenset({
    ('numpy.core.multiarray', '_reconstruct'), ('numpy', 'ndarray'), ('numpy.core.numeric', '_frombuffer')})


class RefusedPickle(ValueError):
    """A pickle that asks for something not on its allow-list."""


def _canonical(module):
    for prefix in _NUMPY_CORE:
        if module.startswith(prefix):
            return 'numpy.core.' + module[len(prefix):]
    return module


def _resolve(module, name):
    """The allowed object itself, under whichever numpy core name this numpy has."""
    if module.startswith('numpy.core.'):
        for prefix in ('numpy._core.', 'numpy.core.'):
            try:
                return getattr(importlib.import_module(prefix + module[len('numpy.core.'):]), name)
            except (ImportError, AttributeError):
                continue
    return getattr(importlib.import_module(module), name)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, allowed):
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module, name):
        key = (_canonical(module), name)
        if key not in self.allowed:
            raise RefusedPickle(f'it asks for {module}.{name}, which this file type may not hold '
                                '(a pickle naming other objects could run code, so it is not read)')
        return _resolve(*key)

    def persistent_load(self, pid):
        raise RefusedPickle('it refers to external objects')


def load(path, allowed=frozenset(), what='pickle'):
    """The object pickled in ``path``, rebuilt from plain containers and the ``allowed``
    (module, name) pairs only. Raises ``ValueError`` naming the file for anything else: a refused
    object, a truncated or garbled file."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        return _Unpickler(io.BytesIO(data), allowed).load()
    except RefusedPickle as e:
        raise ValueError(f'{path}: refused: {e}') from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError, MemoryError) as e:
        raise ValueError(f'{path}: not a readable {what} ({type(e).__name__}: {str(e)[:200]})') from None
