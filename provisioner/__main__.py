import os
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while starting up: no traceback, the usual code
    os._exit(130)

sys.exit(main())
