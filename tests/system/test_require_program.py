"""``require_program``: a test that needs a missing program skips, or fails under .ci/run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.processes import REQUIRE_EXTERNAL, require_program

MISSING = "rps-no-such-program-a8f3"


def test_a_program_on_path_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_EXTERNAL, "1")
    python = Path(sys.executable)
    monkeypatch.setenv("PATH", str(python.parent))
    assert require_program(python.name) == str(python)
    assert require_program("anything", path=python) == str(python)


@pytest.mark.parametrize("value", [None, "", "0"])
def test_a_missing_program_skips_by_default(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(REQUIRE_EXTERNAL, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_EXTERNAL, value)
    with pytest.raises(pytest.skip.Exception, match=f"{MISSING} on PATH not found \\(a hint\\)"):
        require_program(MISSING, "a hint")


def test_a_missing_program_fails_when_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(REQUIRE_EXTERNAL, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{MISSING} on PATH not found.*is set"):
        require_program(MISSING)
    # An exact path must be an executable file: a directory or a plain file is missing.
    plain = tmp_path / "chromium"
    plain.write_text("")
    for path in (tmp_path, plain, tmp_path / "absent"):
        with pytest.raises(pytest.fail.Exception, match=f"{path} not found"):
            require_program("chromium", path=path)
