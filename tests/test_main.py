"""The command line (bnnslstm/__main__.py): ``bnnslstm demo``, ``bnnslstm config`` and
``bnnslstm --version``."""

import pytest

import bnnslstm as bl
from bnnslstm.__main__ import main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"bnnslstm {bl.__version__}\n"


def test_config_prints_show_config(capsys):
    bl.show_config()
    expected = capsys.readouterr().out
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"bnnslstm:\n  version: {bl.__version__}\n")
    # the same sections and keys (values such as the BLAS's thread count may move between calls)
    keys = [line.split(":")[0] for line in printed.splitlines()]
    assert keys == [line.split(":")[0] for line in expected.splitlines()]


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "{demo,config}" in out and "--version" in out
    assert "``" not in out and ":func:" not in out  # no reST markup in a terminal


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "required: command" in capsys.readouterr().err


def test_demo_trains(capsys):
    assert main(["demo", "--epochs", "2", "--hidden", "16"]) == 0
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "the trained LSTM continues 'Alice '" in out
