"""The `outlay` command: `serve`, `demo`, and admin commands that talk to a running gateway."""
