"""``python -m poserun`` runs the CLI."""

import sys

from poserun.cli import main

sys.exit(main())
