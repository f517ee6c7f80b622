"""Every `moejit ...` command README.md prints that needs no GPU runs as printed, with
the `moejit` the set-up installs beside this Python (what `source .venv/bin/activate`
puts on PATH)."""

import os
import re
import shlex
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
# Syntax summaries (NAME, KEY, a|b, [optional]) and what needs a GPU or a results file.
PLACEHOLDER = re.compile(r"\b(NAME|KEY|DIR|PNG|N)\b|\||\[|\.\.\.")
NEEDS_GPU = ("moejit tune", "moejit bench kernels", "moejit bench layer", "moejit bench plot")


def readme_commands():
    text = open(README).read()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("moejit ") and not PLACEHOLDER.search(command) and \
                    not command.startswith(NEEDS_GPU):
                commands.append(command)
    return commands


def test_the_readme_shows_commands_and_how_to_get_moejit_on_path():
    assert len(readme_commands()) >= 5
    assert "source .venv/bin/activate" in open(README).read()
    assert os.access(os.path.join(os.path.dirname(sys.executable), "moejit"), os.X_OK)


@pytest.mark.parametrize("command", readme_commands())
def test_a_readme_command_works_as_printed(command, tmp_path_factory):
    work = tmp_path_factory.getbasetemp() / "readme"   # shared: export, then import, the same file
    work.mkdir(exist_ok=True)
    env = dict(os.environ, MOEJIT_CACHE_DIR=str(work / "cache"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if ">" in command:
        command, target = [part.strip() for part in command.split(">", 1)]
    else:
        target = None
    result = subprocess.run(shlex.split(command), cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    if target:
        (work / target).write_text(result.stdout)
