"""`python -m nanogpt` runs the CLI."""

import sys

from nanogpt.cli import main

sys.exit(main())
