import sys

from faceset.cli import main

sys.exit(main())
