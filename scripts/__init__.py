"""Maintenance scripts of vseam-pl (pretraining the embedded models, regenerating docs pages, the paper's claims).
Each runs as `python scripts/NAME.py` against the installed `vseam_pl`; this file only makes them importable as
`scripts.NAME` from the repository root (`bench.pretraining` times `scripts.pretrain_tiny`'s steps). Not installed."""
