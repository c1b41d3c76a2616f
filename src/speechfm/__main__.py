import sys

from speechfm.cli import main

sys.exit(main())
