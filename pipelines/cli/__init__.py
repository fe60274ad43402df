"""The command line: ``precovery`` (:mod:`pipelines.cli.main`) and one module per topic.

Each topic's commands live in their own module and register themselves on the one Typer
app with a line at the bottom of :mod:`pipelines.cli.main`; :mod:`~pipelines.cli.console`
holds the shared logging, progress and exit codes, :mod:`~pipelines.cli.inputs` the
checks that run before any work, :mod:`~pipelines.cli.options` every option that more
than one command takes (one definition each: a new command reuses them).
"""
