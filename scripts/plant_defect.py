"""Build a planted-defect model organism from an embedded model (`vseam_pl.organism`; docs/organism.md).

    python scripts/plant_defect.py --source checkpoints/tiny-instructblip --layer 0 --head 3 --factor 8 \
        --out checkpoints/tiny-instructblip-planted
"""

from vseam_pl.organism import main

if __name__ == "__main__":
    main()
