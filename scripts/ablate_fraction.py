"""Alias of `vseam sweep` (`vseam_pl/studies/sweep.py`), kept so that the commands recorded in docs/ rerun as written."""

import sys

from vseam_pl.studies.sweep import main

if __name__ == "__main__":
    main(sys.argv[1:])
