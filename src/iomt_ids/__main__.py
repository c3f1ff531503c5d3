import sys

from iomt_ids.cli import main

sys.exit(main())
