"""The README's demo walkthrough and ``scripts/demo-walkthrough.sh`` run the same commands.

The script is what was run against a ``make run`` stack; this keeps the README from drifting away
from it. Only the setup variables differ (the script lets the environment override them).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP = ("API=", "ORIGIN=", "PASSWORD=")


def walkthrough_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Demo walkthrough", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_every_readme_command_is_in_the_script() -> None:
    commands = walkthrough_commands()
    script = {line.strip() for line in (ROOT / "scripts/demo-walkthrough.sh").read_text(encoding="utf-8").splitlines()}
    assert len(commands) > 25
    missing = [line for line in commands if not line.startswith(SETUP) and line not in script]
    assert not missing


def test_the_script_is_valid_bash() -> None:
    path = ROOT / "scripts/demo-walkthrough.sh"
    assert path.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(path)], check=True)
