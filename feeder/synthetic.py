"""``python -m feeder.synthetic``: the synthetic dataset's generator (code in :mod:`feeder.raw.synthetic`)."""
import sys

from feeder.raw.synthetic import main

if __name__ == '__main__':
    sys.exit(main())
