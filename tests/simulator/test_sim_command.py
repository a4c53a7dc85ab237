"""The ``simulator`` click command and ``python -m pipeline.simulator``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click
import httpx
from click.testing import CliRunner

from pipeline.simulator import Simulator
from pipeline.simulator.command import simulator_command


def test_command_is_named_simulator_and_has_help_for_every_option() -> None:
    assert isinstance(simulator_command, click.Command) and simulator_command.name == "simulator"
    for parameter in simulator_command.params:
        assert isinstance(parameter, click.Option) and parameter.help, parameter.name
    result = CliRunner().invoke(simulator_command, ["--help"])
    assert result.exit_code == 0
    for needle in ("--faults", "--register-voice", "--files-port", "drop_after_create", "/admin/ledger",
                   "dead_link", "no_link", "status_alias", "status_unknown", "take"):  # fmt: skip
        assert needle in result.output


def test_faults_option_accepts_and_lists_the_task_fault_keys(monkeypatch) -> None:
    monkeypatch.setattr(Simulator, "serve_forever", lambda self: self.stop())  # start, print, return
    spec = "seed=3,dead_link=0.1,no_link=0.2,status_alias=0.3,status_unknown=0.05"
    result = CliRunner().invoke(simulator_command, ["--faults", spec, "--port", "0"])
    assert result.exit_code == 0, result.output
    assert f"Faults: {spec};" in result.output


def test_bad_fault_spec_is_a_usage_error() -> None:
    result = CliRunner().invoke(simulator_command, ["--faults", "boom=1", "--port", "0"])
    assert result.exit_code == 2 and "unknown fault key" in result.output


def test_module_serves_until_interrupted_and_prints_the_env_vars() -> None:
    env = {**os.environ, "SOUNDCLONE_API_KEY": "sk-from-env"}
    command = [sys.executable, "-m", "pipeline.simulator", "--port", "0", "--register-voice", "model_cli"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            lines = []
            while not lines or "Ctrl-C" not in lines[-1]:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                lines.append(line)
            output = "".join(lines)
            base_url = next(x for x in lines if "SOUNDCLONE_BASE_URL=" in x).split("=", 1)[1].strip()
            assert "export SOUNDCLONE_API_KEY=sk-from-env" in output
            response = httpx.post(
                base_url + "/api/open-api/v1/soundCloning/audios",
                headers={"Authorization": "Bearer sk-from-env"},
                json={"modelId": "model_cli", "contentText": "Hello from the command line."},
            )
            assert response.status_code == 200, response.text
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
    assert proc.returncode == 0
