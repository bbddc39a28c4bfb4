"""``python -m nfkit_core.cli``: the ``nf`` command, e.g.
``torchrun --nproc_per_node 2 -m nfkit_core.cli train ...``."""

import sys

from nfkit_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
