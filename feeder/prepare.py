"""``python -m feeder.prepare``: the preparation command (code in :mod:`feeder.raw.prepare`)."""
import sys

from feeder.raw.prepare import main

if __name__ == '__main__':
    sys.exit(main())
