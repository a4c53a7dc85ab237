"""``python -m pipeline.simulator``: the same as the ``simulator`` command."""

from pipeline.simulator.command import simulator_command

if __name__ == "__main__":
    simulator_command(prog_name="python -m pipeline.simulator")
