"""The ntdm command line: help, version, info, error policy."""

import os
import subprocess
import sys

import numpy as np
import pytest

from ntdm_cli import __version__
from ntdm_cli.artifacts import write_artifact
from ntdm_cli.cli.main import hoist_global_options


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ntdm_cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "NTDM_NO_PROGRESS": "1", "COLUMNS": "200"})


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    assert "info" in r.stdout


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"ntdm {__version__}"


def test_info(tmp_path):
    p = write_artifact(tmp_path / "x.h5", "bench", {"table": {"time": np.ones((3, 2))}, "names": ["a"]},
                       config_yaml="bench:\n  repeats: 3\n")
    r = run("info", str(p))
    assert r.returncode == 0, r.stderr
    assert "bench" in r.stdout and "table/time" in r.stdout and "3×2" in r.stdout and "repeats" in r.stdout


def test_bad_option_is_usage_error():
    r = run("info", "--no-such-option")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "No such option" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_device_and_set():
    r = run("--device", "gpu", "info", "x.h5")
    assert r.returncode == 2 and "--device" in r.stderr
    r = run("--set", "oops", "info", "x.h5")
    assert r.returncode == 2 and "section.key=value" in r.stderr


def test_missing_and_truncated_artifact(tmp_path):
    # a missing input is a usage error (exit 2) in every command; a damaged one a failure (exit 1)
    r = run("info", str(tmp_path / "missing.h5"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    r = run("info", str(bad))
    assert r.returncode == 1 and "bad.h5" in r.stderr and r.stderr.strip().count("\n") == 0


def test_verbose_shows_traceback(tmp_path):
    r = run("--verbose", "info", str(tmp_path / "missing.h5"))
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_global_options_after_subcommand():
    assert hoist_global_options(["info", "x.h5", "--device", "cpu", "--verbose", "--set=a.b=1"]) == [
        "--device", "cpu", "--verbose", "--set=a.b=1", "info", "x.h5"]
    r = run("info", "missing.h5", "--device", "cpu")
    assert r.returncode == 2 and "no such file" in r.stderr
