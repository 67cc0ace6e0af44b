"""`python -m simulator`: run every channel simulator in the foreground (see `simulator.server.main`)."""

import sys

from .server import main

sys.exit(main(sys.argv[1:]))
