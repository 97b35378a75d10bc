"""The command line: typer commands that parse their options, call one library function and render
its result (probe/cli/app.py wires them)."""
