"""Run a test module's checks in a child process under Triton's CPU interpreter.

TRITON_INTERPRET is read when triton is imported, so interpreted checks cannot share a pytest process
with the rest: the child runs `python <module file>`, whose `__main__` prints a JSON object on its last
line, and the tests assert on that object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_interpreted(module_file: str, timeout: int = 900) -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, module_file], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
