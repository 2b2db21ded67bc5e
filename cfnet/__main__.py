import sys

from cfnet.cli import main

sys.exit(main())
