import sys

from lofi_engine.cli import main

sys.exit(main())
