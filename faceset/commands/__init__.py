"""One module per CLI subcommand; each exposes ``register(subparsers)``.

A command module imports its heavy dependencies inside its run function, so that
``faceset --help`` stays fast and an optional extra is imported only when used.
"""
