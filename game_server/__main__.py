import sys

from game_server.cli.main import main

sys.exit(main())
