"""The ``ntdm`` command line: one module per subcommand, each defining ``register(app)`` with a thin
Typer function over an importable library function. Modules are discovered automatically."""
