"""The options more than one command takes, each defined once: its flag, environment
variable, type and default live here; a command adds only what the option means to it.

Two shapes. An alias (``Verbose``, ``Bootstrap``, ``TopicPrefix`` …) is the whole option,
help included, for options that mean the same everywhere. A factory (``state_dir(help)``,
``model_dir(help)`` …) fixes the flag and the environment variable and takes the help
text, for options whose role differs by command (``--state-dir`` holds checkpoints for
``stream``, the outbox and the audit trail for ``demo``). Use either inside
``Annotated``::

    def cmd(state_dir: Annotated[Path, options.state_dir("Checkpoints go here")] = STATE_DIR,
            verbose: Verbose = False) -> None: ...

Some ``precovery evaluate --telemetry`` options deliberately have no environment
variable (``envvar=None``): ``PRECOVERY_TELEMETRY`` exported for ``precovery train``
would otherwise switch ``evaluate`` into its history mode.

Light at import, like every CLI module (typer and the standard library only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

#: Where local state goes (checkpoints, outbox, audit trail, API keys, feedback).
STATE_DIR = Path(".precovery")

# -- the same everywhere ------------------------------------------------------------------
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", envvar="PRECOVERY_VERBOSE", help="Log at DEBUG level"),
]

Mkdir = Annotated[
    bool,
    typer.Option(
        "--mkdir", envvar="PRECOVERY_MKDIR", help="Create the output's folder if it is missing"
    ),
]

TopologyFile = Annotated[
    Path | None,
    typer.Option(
        "--topology",
        envvar="PRECOVERY_TOPOLOGY_FILE",
        help="Systems, criticality, venues, sites, authority and cost parameters, YAML or "
        "JSON (docs/decisions.md); default: every component critical, authority approve",
    ),
]

Detector = Annotated[
    str,
    typer.Option(
        envvar="PRECOVERY_DETECTOR",
        help="surprise (calibrated, default) or surprise_hst (with river's HalfSpaceTrees, "
        "~1 MiB per host: small fleets); the model must have been trained on the same detector",
    ),
]

_BOOTSTRAP_ENV = "PRECOVERY_KAFKA__BOOTSTRAP_SERVERS"
_BOOTSTRAP_HELP = "Kafka host:port[,host:port]"

#: ``--bootstrap`` (stream, serve, deliver).
Bootstrap = Annotated[str, typer.Option(envvar=_BOOTSTRAP_ENV, help=_BOOTSTRAP_HELP)]
#: The same as a positional argument (``precovery simulate-kafka BOOTSTRAP``).
BootstrapArgument = Annotated[str, typer.Argument(envvar=_BOOTSTRAP_ENV, help=_BOOTSTRAP_HELP)]

TopicPrefix = Annotated[
    str, typer.Option(envvar="PRECOVERY_TOPIC_PREFIX", help="Prefix of every topic name")
]

Partitions = Annotated[
    int, typer.Option(envvar="PRECOVERY_PARTITIONS", help="Partitions of topics this creates")
]

IdleExit = Annotated[
    float | None,
    typer.Option(envvar="PRECOVERY_IDLE_EXIT_S", help="Stop after this many seconds idle"),
]

FailuresPerDay = Annotated[
    float, typer.Option(envvar="PRECOVERY_FAILURES_PER_DAY", help="Random failures per day")
]


# -- one flag and variable, the help by command -------------------------------------------
def state_dir(help: str = "Local state directory") -> Any:
    """``--state-dir`` (``PRECOVERY_STATE_DIR``); its default is :data:`STATE_DIR`."""
    return typer.Option(envvar="PRECOVERY_STATE_DIR", help=help)


#: ``--state-dir`` with the plain help (keys, audit).
StateDir = Annotated[Path, state_dir()]


def model_dir(help: str = "Risk model directory") -> Any:
    """``--model`` (``PRECOVERY_MODEL_DIR``): a model directory (``evaluate``: or a URI)."""
    return typer.Option("--model", envvar="PRECOVERY_MODEL_DIR", help=help)


def model_out(help: str) -> Any:
    """``--out`` for a model directory to write (``PRECOVERY_MODEL_OUT``)."""
    return typer.Option(envvar="PRECOVERY_MODEL_OUT", help=help)


def out(help: str) -> Any:
    """``--out`` (``PRECOVERY_OUT``): the file or folder a command writes."""
    return typer.Option(envvar="PRECOVERY_OUT", help=help)


def table_format(help: str) -> Any:
    """``--format`` (``PRECOVERY_FORMAT``): csv or parquet."""
    return typer.Option("--format", envvar="PRECOVERY_FORMAT", help=help)


def json_file(help: str, envvar: str | None = None) -> Any:
    """``--json PATH``: a report written as JSON (each command keeps its own variable)."""
    return typer.Option("--json", envvar=envvar, help=help)


def json_lines(help: str) -> Any:
    """``--json`` as a switch (``PRECOVERY_JSON``): JSON lines on stdout."""
    return typer.Option("--json", envvar="PRECOVERY_JSON", help=help)


def hours(help: str = "Simulated hours") -> Any:
    """``--hours`` (``PRECOVERY_HOURS``): simulated hours."""
    return typer.Option(envvar="PRECOVERY_HOURS", help=help)


def seed(help: str = "Simulator seed") -> Any:
    """``--seed`` (``PRECOVERY_SEED``): the simulator's seed."""
    return typer.Option(envvar="PRECOVERY_SEED", help=help)


#: ``--seed`` with the plain help.
Seed = Annotated[int, seed()]


def rate(help: str) -> Any:
    """``--rate`` (``PRECOVERY_RATE``): telemetry events per second, 0 = as fast as possible."""
    return typer.Option(envvar="PRECOVERY_RATE", help=help)


def history(help: str) -> Any:
    """``--history`` (``PRECOVERY_HISTORY``): a history file or folder."""
    return typer.Option(envvar="PRECOVERY_HISTORY", help=help)


def metrics(help: str) -> Any:
    """``--metrics`` (``PRECOVERY_METRICS``): comma-separated metric columns."""
    return typer.Option(envvar="PRECOVERY_METRICS", help=help)


def telemetry(help: str, envvar: str | None = "PRECOVERY_TELEMETRY") -> Any:
    """``--telemetry``: a telemetry history, CSV or Parquet."""
    return typer.Option(envvar=envvar, help=help)


def incidents(
    help: str = "Incident history, CSV", envvar: str | None = "PRECOVERY_INCIDENTS"
) -> Any:
    """``--incidents``: an incident history, CSV."""
    return typer.Option(envvar=envvar, help=help)


def min_lead(help: str, envvar: str | None = "PRECOVERY_MIN_LEAD") -> Any:
    """``--min-lead``: the warning an incident needs to count as caught (2m, 300s …)."""
    return typer.Option(envvar=envvar, help=help)


def from_ts(help: str) -> Any:
    """``--from``: an evaluation window's start, RFC 3339."""
    return typer.Option("--from", help=help)


def api_host(help: str) -> Any:
    """``--host`` (``PRECOVERY_API__HOST``): the API's listen address."""
    return typer.Option(envvar="PRECOVERY_API__HOST", help=help)


def api_port(help: str) -> Any:
    """``--port`` (``PRECOVERY_API__PORT``): the API's listen port."""
    return typer.Option(envvar="PRECOVERY_API__PORT", help=help)
