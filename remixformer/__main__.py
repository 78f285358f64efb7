import sys

from remixformer.cli.main import main

sys.exit(main())
