"""Where prepared data comes from: one module per source, each giving its listers (``DATASETS``:
a ``--dataset`` name -> ``lister(args)`` -> :class:`~feeder.raw.sources.base.Listing`, main
process) and its kinds of raw file (``READERS``: a task's ``source`` -> a
:class:`~feeder.raw.sources.base.Source` row, read in the workers). A new source is one module
and its entry in ``MODULES`` (docs/code.md)."""
from feeder.raw.sources import ntu, own, pku, synthetic, ucla

MODULES = (ntu, pku, ucla, own, synthetic)
LISTINGS = {name: lister for module in MODULES for name, lister in module.DATASETS.items()}
SOURCES = {name: row for module in MODULES for name, row in module.READERS.items()}
NTU_FORMAT = (*ntu.DATASETS, *synthetic.DATASETS)  # the datasets of .skeleton files (--ignore-list)
