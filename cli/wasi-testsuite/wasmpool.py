"""A runtime adapter for wasi-testsuite's test runner: it runs each test
program with the wasmpool command line, `wasmpool run`, which runs a
command component (or a WASI 0.1 core module, wrapped into one) in a
pool worker the way `wasmtime run` runs it.

    python3 test-runner/wasi_test_runner.py \
        -t tests/rust/testsuite/wasm32-wasip1 \
        -r /path/to/wasmpool/cli/wasi-testsuite/wasmpool.py

`WASMPOOL` names the command line (default: `wasmpool` on the PATH), with
any options of its own, e.g. `WASMPOOL="target/release/wasmpool"`.
"""

import os
import shlex
import subprocess
from typing import Dict, List, Optional, Tuple

WASMPOOL = shlex.split(os.getenv("WASMPOOL", "wasmpool"))


def get_name() -> str:
    return "wasmpool"


def get_version() -> str:
    # `wasmpool --version` prints "wasmpool 0.1.0".
    result = subprocess.run(WASMPOOL[0:1] + ["--version"],
                            encoding="UTF-8", capture_output=True,
                            check=True)
    return result.stdout.split()[1]


def get_wasi_versions() -> List[str]:
    # WASI 0.1 programs only: wasmpool runs WASI 0.2 components, and 0.1
    # core modules wrapped into them; WASI 0.3 (async) is not yet served.
    return ["wasm32-wasip1"]


def get_wasi_worlds() -> List[str]:
    return ["wasi:cli/command"]


def compute_argv(test_path: str,
                 args_env_root: Tuple[List[str], Dict[str, str], Optional[str]],
                 proposals: List[str],
                 wasi_world: str,
                 wasi_version: str) -> List[str]:
    args, env, root = args_env_root
    argv = WASMPOOL + ["run"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if root:
        argv += ["--dir", f"{root}::/"]
    # The program's own arguments come after `--`, as for `wasmtime run`'s
    # after the file.
    argv += [test_path, "--"] + args
    return argv
