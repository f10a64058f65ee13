"""The synthetic dataset (``python -m feeder.synthetic``): NTU-format files of known actions,
split as NTU-60 is; its subjects, setups and actions may go past NTU's ranges."""
from feeder.raw.sources.ntu import NTU60_SPLITS, list_ntu_files

SPLITS = NTU60_SPLITS
DATASETS = {'synthetic': lambda args: list_ntu_files(args, SPLITS, max_setup=999, max_action=999)}
READERS = {}  # its files are read as NTU's
