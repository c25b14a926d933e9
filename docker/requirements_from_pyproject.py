"""Docker build step: print the [project] dependencies of pyproject.toml, torch excluded (installed from the CPU index).

python requirements_from_pyproject.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import re
import sys

import tomllib

with open(sys.argv[1], "rb") as f:
    dependencies = tomllib.load(f)["project"]["dependencies"]
for requirement in dependencies:
    if re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower() != "torch":
        sys.stdout.write(requirement + "\n")
