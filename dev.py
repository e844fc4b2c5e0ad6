#!/usr/bin/env python3
"""One entry point for a fresh checkout: ``python3 dev.py serve`` and ``python3 dev.py test``.

Needs only Python 3.11+. It makes ``.venv`` on first use, installs the project with its
test tools (again whenever ``pyproject.toml`` changes), then runs the command inside it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".installed-from"

USAGE = """usage: python3 dev.py COMMAND [ARGS...]

  serve [OPTIONS]    run the server on its defaults (port 9595); options as for
                     python -m game_server (try: python3 dev.py serve --help)
  test [PYTEST ARGS] ruff, mypy and the whole pytest suite
  bot [OPTIONS]      run bot clients against a server (python -m bots)
"""


def run(*command: str | Path) -> None:
    subprocess.run([str(part) for part in command], check=True, cwd=ROOT)


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs on any python3
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        try:
            import ensurepip  # noqa: F401
        except ImportError:
            # Debian splits venv support out of the interpreter package.
            if shutil.which("apt-get") and os.geteuid() == 0:
                run("apt-get", "install", "-y", "-q", "python3-venv")
            else:
                sys.exit("python3 -m venv does not work here: install python3-venv first")
        print("dev.py: creating .venv", file=sys.stderr)
        run(sys.executable, "-m", "venv", VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != wanted:
        print("dev.py: installing the project and its test tools into .venv", file=sys.stderr)
        run(PYTHON, "-m", "pip", "install", "-q", "--upgrade", "pip")
        run(PYTHON, "-m", "pip", "install", "-q", "-e", ".[test]")
        STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command not in ("serve", "test", "bot"):
        print(USAGE, file=sys.stderr)
        return 2
    ensure_venv()
    os.chdir(ROOT)
    if command == "serve":
        os.execv(PYTHON, [str(PYTHON), "-m", "game_server", *args])
    if command == "bot":
        os.execv(PYTHON, [str(PYTHON), "-m", "bots", *args])
    steps = [
        [BIN / "ruff", "check", "."],
        [BIN / "ruff", "format", "--check", "."],
        [BIN / "mypy"],
        [PYTHON, "-m", "pytest", *args],
    ]
    for step in steps:
        print(
            "dev.py: $",
            " ".join(str(part.name if isinstance(part, Path) else part) for part in step),
            file=sys.stderr,
            flush=True,
        )
        code = subprocess.run([str(part) for part in step], cwd=ROOT).returncode
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
