import sys

from game_server.cli import main

sys.exit(main())
