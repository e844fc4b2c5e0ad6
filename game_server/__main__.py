import sys

from game_server.ops.cli import main

sys.exit(main())
