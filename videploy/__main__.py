import sys

from videploy.cli import main

sys.exit(main())
