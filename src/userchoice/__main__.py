"""``python -m userchoice``: the command line (the same as the ``userchoice`` command)."""

from userchoice.cli import app

if __name__ == "__main__":
    app(prog_name="userchoice")
