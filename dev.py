#!/usr/bin/env python3
"""One entry point for a fresh checkout: ``python3 dev.py serve`` and ``python3 dev.py test``.

Needs only Python 3.11+. It makes ``.venv`` on first use, installs the project with its
test tools at the versions pinned in ``constraints.txt`` (again whenever that file or
``pyproject.toml`` changes), then runs the command inside it.
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
CONSTRAINTS = ROOT / "constraints.txt"

USAGE = """usage: python3 dev.py COMMAND [ARGS...]

  serve [OPTIONS]    run the server on its defaults (port 9595); options as for
                     python -m game_server (try: python3 dev.py serve --help)
  test [PYTEST ARGS] ruff, mypy, the import contracts and the whole pytest suite
  test --fast [...]  the same without the system tests (real processes, nginx, pm2,
                     browsers, databases): the quick edit-test loop
  bot [OPTIONS]      run bot clients against a server (python -m bots)
  lock               pin every dependency afresh into constraints.txt
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
    inputs = (ROOT / "pyproject.toml").read_bytes() + CONSTRAINTS.read_bytes()
    wanted = hashlib.sha256(inputs).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != wanted:
        print("dev.py: installing the project and its test tools into .venv", file=sys.stderr)
        run(PYTHON, "-m", "pip", "install", "-q", "--upgrade", "pip")
        run(PYTHON, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, "-e", ".[test]")
        STAMP.write_text(wanted)


def lock() -> int:
    """Resolve the dependencies afresh in a scratch venv and pin what it got."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        python = Path(scratch) / "bin" / "python"
        run(sys.executable, "-m", "venv", scratch)
        run(python, "-m", "pip", "install", "-q", "--upgrade", "pip")
        run(python, "-m", "pip", "install", "-q", ".[test]")
        frozen = subprocess.run(
            [str(python), "-m", "pip", "freeze", "--exclude-editable"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    pins = [line for line in frozen.splitlines() if not line.startswith("rps-game-server")]
    CONSTRAINTS.write_text(
        "# Every dependency's version, for CI and the benchmarks (python3 dev.py installs\n"
        "# with -c constraints.txt). Made by `python3 dev.py lock`; commit it with the change\n"
        "# that needs it.\n" + "\n".join(pins) + "\n"
    )
    print(f"dev.py: {len(pins)} pins written to {CONSTRAINTS.name}", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command not in ("serve", "test", "bot", "lock"):
        print(USAGE, file=sys.stderr)
        return 2
    if command == "lock":
        return lock()
    ensure_venv()
    os.chdir(ROOT)
    if command == "serve":
        os.execv(PYTHON, [str(PYTHON), "-m", "game_server", *args])
    if command == "bot":
        os.execv(PYTHON, [str(PYTHON), "-m", "bots", *args])
    if "--fast" in args:
        args = [arg for arg in args if arg != "--fast"]
        args = ["-m", "not system", *args]
    steps = [
        [BIN / "ruff", "check", "."],
        [BIN / "ruff", "format", "--check", "."],
        [BIN / "mypy"],
        [BIN / "lint-imports"],
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
