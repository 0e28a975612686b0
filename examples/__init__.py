"""Example applications embedding the server: `python -m examples.<name>`."""
