"""Every command module's subcommands are on the command line; a module that cannot be imported
fails the command line loudly instead of silently removing its commands."""

import subprocess
import sys

import pytest

from kit_otel.cli import main as cli


def _subcommands(parser) -> set[str]:
    for action in parser._actions:  # argparse keeps its subparsers only here
        if action.dest == "command":
            return set(action.choices)
    raise AssertionError("the parser has no subcommands")


def test_serve_and_bridge_are_commands():
    commands = _subcommands(cli.build_parser())
    assert {"serve", "bridge", "replay", "summary", "demo", "config"} <= commands


@pytest.mark.parametrize("module", cli.COMMAND_MODULES)
def test_a_broken_command_module_is_an_import_error_not_a_missing_command(module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(ImportError, match=module):
        cli.build_parser()


@pytest.mark.parametrize("module", cli.COMMAND_MODULES)
def test_a_broken_command_module_is_one_line_and_exit_code_70(module):
    code = (f"import sys; sys.modules['{module}'] = None; "
            "from kit_otel.cli import main as cli; sys.exit(cli.main(['config']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == cli.EXIT_INTERNAL, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and module in lines[0], result.stderr
    assert result.stdout == ""
