"""Shared helpers for the oracle tests: the zoo-tool binary under test and a runner."""
import os
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# torchvision imports only with these registrations stubbed (see notes).
for _m in ["torchvision._meta_registrations", "torchvision._autograd_registrations"]:
    sys.modules.setdefault(_m, types.ModuleType(_m))


def zoo_tool_path():
    return os.environ.get("ZOO_TOOL") or os.path.join(ROOT, ".build", "release", "zoo-tool")


@pytest.fixture(scope="session")
def zoo_tool():
    path = zoo_tool_path()
    if not os.access(path, os.X_OK):
        pytest.fail("zoo-tool binary not found at %s (build with `swift build -c release` or set ZOO_TOOL)" % path)
    return path


def run_zoo(*args, timeout=900):
    """Runs zoo-tool; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([zoo_tool_path()] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
