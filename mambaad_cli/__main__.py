"""`python -m mambaad_cli ...` = `mambaad ...` (what torchrun runs: torchrun -m mambaad_cli train ...)."""

import sys

from mambaad_cli.cli import main

sys.exit(main())
