"""``python -m imcodec.cli``."""

import sys

from imcodec.cli import main

sys.exit(main())
