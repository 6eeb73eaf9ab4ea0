"""`python train.py` is `vseam train`: learn per-head scales of a frozen VLM, then test them (`vseam_pl/train.py`).

python train.py                                   # embedded tiny InstructBLIP, synthetic POPE (configs/default.yaml)
python train.py -c configs/<recipe>.yaml --trainer.max_epochs 2 --data.fraction 0.1
python train.py --print_config                    # the resolved configuration
"""

from vseam_pl.signals import stop_on_sigterm
from vseam_pl.train import main

main = stop_on_sigterm(main, "train.py")  # SIGTERM: exit 143 naming the last checkpoint, never 0

if __name__ == "__main__":
    main()
