"""``python3 -m gateway.cli serve | dev``, as the ``event-gateway`` console script."""

import sys

from gateway.cli import main

sys.exit(main())
