"""``python -m nf_core.cli`` runs the ``nf`` command line."""

import sys

from nf_core.cli import main

sys.exit(main())
