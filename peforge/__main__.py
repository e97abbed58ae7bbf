import sys

from peforge.cli import main

sys.exit(main())
