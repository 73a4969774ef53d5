import sys

from taco_plus.cli import main

sys.exit(main())
