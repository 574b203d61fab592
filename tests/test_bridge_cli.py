"""`kit-otel bridge install|uninstall|status|path` with a temporary HOME, XDG dirs and project."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from kit_otel.cli import bridge_install as bridge_cli
from kit_otel.bridge import BRIDGE_FILENAME, BRIDGE_PATH, bridge_sha256, bridge_source


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh HOME without XDG overrides, and a project directory as the working dir."""
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "KIT_OPT_KIT_OTEL_SPOOL_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(project)
    return home


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="kit-otel")
    bridge_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def global_file(home: Path) -> Path:
    return home / ".config" / "kit" / "extensions" / BRIDGE_FILENAME


def project_file() -> Path:
    return Path.cwd() / ".kit" / "extensions" / BRIDGE_FILENAME


def test_path_prints_the_shipped_file(home, capsys):
    assert run("bridge", "path") == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == BRIDGE_PATH
    assert printed.is_file() and printed.suffix == ".go"
    assert printed.read_bytes().startswith(b"//go:build ignore\n")


def test_install_global_default_dir(home, capsys):
    assert run("bridge", "install") == 0
    target = global_file(home)
    assert target.read_bytes() == bridge_source()
    assert capsys.readouterr().out.strip().splitlines() == [
        f"installed {target}",
        "restart running KIT sessions to load it (new sessions load it by themselves)"]
    # The recorded hash sits next to it under a name KIT does not load (not *.go).
    recorded = target.with_name(BRIDGE_FILENAME + ".sha256")
    assert recorded.read_text().split()[0] == bridge_sha256()
    assert not recorded.name.endswith(".go")
    assert [p.name for p in target.parent.glob("*.go")] == [BRIDGE_FILENAME]


def test_install_follows_xdg_config_home(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert run("bridge", "install") == 0
    assert (tmp_path / "xdg" / "kit" / "extensions" / BRIDGE_FILENAME).read_bytes() == bridge_source()
    assert not global_file(home).exists()


def test_install_project(home, capsys):
    assert run("bridge", "install", "--project") == 0
    assert project_file().read_bytes() == bridge_source()
    assert not global_file(home).exists()


def test_install_twice_is_a_no_op(home, capsys):
    run("bridge", "install")
    before = global_file(home).stat().st_mtime_ns
    capsys.readouterr()
    assert run("bridge", "install") == 0
    assert "already up to date" in capsys.readouterr().out
    assert global_file(home).stat().st_mtime_ns == before


def test_modified_file_is_not_overwritten_without_force(home, capsys):
    run("bridge", "install")
    target = global_file(home)
    edited = bridge_source() + b"\n// my local tweak\n"
    target.write_bytes(edited)
    capsys.readouterr()
    assert run("bridge", "install") == 1
    err = capsys.readouterr().err
    assert "--force" in err and str(target) in err
    assert target.read_bytes() == edited
    assert run("bridge", "install", "--force") == 0
    assert "replaced" in capsys.readouterr().out
    assert target.read_bytes() == bridge_source()


def test_foreign_file_with_the_same_name_counts_as_modified(home, capsys):
    target = global_file(home)
    target.parent.mkdir(parents=True)
    target.write_text("//go:build ignore\n\npackage main\n")
    assert bridge_cli.inspect(target.parent, "global").state == bridge_cli.MODIFIED
    assert run("bridge", "install") == 1
    assert target.read_text().endswith("package main\n")


def test_outdated_unmodified_file_is_updated_without_force(home, capsys):
    """A bridge an older kit-otel wrote (its hash recorded, untouched since) is simply updated."""
    target = global_file(home)
    target.parent.mkdir(parents=True)
    old = b"//go:build ignore\n\n// kit-otel bridge 0.0.1\npackage main\n"
    target.write_bytes(old)
    import hashlib

    target.with_name(BRIDGE_FILENAME + ".sha256").write_text(
        hashlib.sha256(old).hexdigest() + "  " + BRIDGE_FILENAME + "\n")
    assert bridge_cli.inspect(target.parent, "global").state == bridge_cli.OUTDATED
    assert run("bridge", "install") == 0
    assert capsys.readouterr().out.startswith("updated ")
    assert target.read_bytes() == bridge_source()


def test_uninstall(home, capsys):
    run("bridge", "install")
    target = global_file(home)
    assert run("bridge", "uninstall") == 0
    assert not target.exists()
    assert not target.with_name(BRIDGE_FILENAME + ".sha256").exists()
    capsys.readouterr()
    assert run("bridge", "uninstall") == 0
    assert "not installed" in capsys.readouterr().out


def test_uninstall_keeps_a_modified_file_without_force(home, capsys):
    run("bridge", "install", "--project")
    project_file().write_text("// mine\n")
    assert run("bridge", "uninstall", "--project") == 1
    assert project_file().exists()
    assert run("bridge", "uninstall", "--project", "--force") == 0
    assert not project_file().exists()


def test_status(home, tmp_path, monkeypatch, capsys):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "kit-123-20260609T131810.000000000Z-1.ndjson").write_text("")
    monkeypatch.setenv("KIT_OPT_KIT_OTEL_SPOOL_DIR", str(spool))
    run("bridge", "install")
    capsys.readouterr()
    assert run("bridge", "status", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    states = {loc["scope"]: loc["state"] for loc in info["locations"]}
    assert states == {"global": "current", "project": "missing"}
    assert info["shipped"]["sha256"] == bridge_sha256()
    assert info["spool_dir"] == str(spool)
    assert info["spool_files"] == 1
    assert info["options"]["kit-otel-spool-dir"] == str(spool)
    assert info["warnings"] == []

    assert run("bridge", "install", "--project") == 0
    assert "load the bridge twice" in capsys.readouterr().err
    run("bridge", "status")
    out, err = capsys.readouterr()
    assert "global   current" in out and "project  current" in out
    assert "twice" in err


def test_default_spool_dir_matches_the_bridge(home, tmp_path, monkeypatch):
    assert bridge_cli.spool_dir() == home / ".local" / "state" / "kit-otel" / "spool"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert bridge_cli.spool_dir() == tmp_path / "state" / "kit-otel" / "spool"
    src = BRIDGE_PATH.read_text()
    assert '"kit-otel", "spool"' in src and "XDG_STATE_HOME" in src


def test_wired_into_the_kit_otel_command(home, capsys):
    cli = pytest.importorskip("kit_otel.cli.main")
    assert cli.main(["bridge", "path"]) == 0
    assert Path(capsys.readouterr().out.strip()) == BRIDGE_PATH


def test_status_says_what_the_last_bridge_resolved(home, capsys, monkeypatch, tmp_path):
    spool = tmp_path / "state" / "kit-otel" / "spool"
    spool.mkdir(parents=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    header = {"v": 1, "seq": 1, "ts": "2026-06-09T13:18:12Z", "pid": 7, "session_path": "",
              "type": "bridge_start", "source": "bridge", "agent": "main",
              "data": {"BridgeVersion": "0.1.0", "StartedAt": "2026-06-09T13:18:12Z",
                       "Options": {"kit-otel-spool-dir": str(spool), "kit-otel-socket": "off",
                                   "environment": "/proc/self/environ"}}}
    (spool / "kit-7-20260609T131812.000000000Z-1.ndjson").write_text(json.dumps(header) + "\n")
    assert run("bridge", "status") == 0
    out = capsys.readouterr().out
    assert f"spool dir {spool}, socket off, environment from /proc/self/environ" in out
