"""Alias of `vseam compare` (`vseam_pl/studies/compare.py`), kept so that the commands recorded in docs/ rerun as written."""

import sys

from vseam_pl.studies.compare import main

if __name__ == "__main__":
    main(sys.argv[1:])
