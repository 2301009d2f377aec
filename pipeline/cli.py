"""`ofsys-pipeline` command line: `run` and `forget` here; the tools' commands (demo,
produce, journey-emulator, bench) in tools/commands.py and the read-side ones (explain,
replay) in inspect/commands.py, registered on the same subparsers.

Bad usage or configuration prints one line and exits 2; the account key is never
echoed (config errors describe its shape, not its value).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__, config, logs
from .cli_args import EXIT_CONFIG, fail
from .errors import BrokerMissingError, ConfigError, PipelineError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):  # name the options only: a value may be a secret
            names = [a.split("=", 1)[0] for a in message[len(prefix) :].split() if a[:1] == "-"]
            message = prefix + (" ".join(names) or "(values withheld)")
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def cmd_run(args: argparse.Namespace) -> int:
    from .runtime.wiring import build_pipeline
    from .server import serve

    settings = config.load(os.environ, vars(args))
    logs.setup(settings.log_level)
    pipeline, metrics, health = build_pipeline(settings)
    server = serve(settings.metrics_port, metrics, health) if settings.metrics_port else None
    signal.signal(signal.SIGTERM, lambda *_: pipeline.stop())
    signal.signal(signal.SIGINT, lambda *_: pipeline.stop())
    try:
        pipeline.run()
    finally:
        if server is not None:
            server.shutdown()
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """GDPR erasure: a forget request to the control topic (runtime/control.py)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from .runtime.control import request_forget

    topic = args.topic or os.environ.get("OFSYS_TOPIC")
    if not topic:
        fail("--topic or OFSYS_TOPIC is required")
    kafka = {
        "bootstrap.servers": args.bootstrap_servers
        or os.environ.get("OFSYS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    }
    written = request_forget(
        AdminClient(kafka),
        Producer({**kafka, "enable.idempotence": True}),
        email=args.email,
        cart_id=args.cart,
        topic=topic,
        partitioner=args.partitioner or os.environ.get("OFSYS_PARTITIONER", "murmur2"),
    )
    sys.stdout.write(json.dumps(written) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ofsys-pipeline",
        description="Feed Ofsys Journey (trigger and abandoned-cart e-mails) from a shop's "
        "DigitalDataManager events on Kafka. `ofsys-pipeline COMMAND --help` describes "
        "each command and its options.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="consume site events and feed Journey",
        description="Consume Avro site events from Kafka as a consumer-group "
        "member and deliver Journey commands. Every option is also an "
        "environment variable. OFSYS_KAFKA_<PROPERTY> passes <property> to "
        "librdkafka (OFSYS_KAFKA_SESSION_TIMEOUT_MS -> session.timeout.ms), to the "
        "clients it is for; OFSYS_KAFKA_CONSUMER_<PROPERTY>, "
        "OFSYS_KAFKA_PRODUCER_<PROPERTY> and OFSYS_KAFKA_ADMIN_<PROPERTY> set it for "
        "one client only.",
    )
    config.add_arguments(run)
    run.set_defaults(func=cmd_run)

    from .tools.commands import add_commands as add_tool_commands  # emulator, produce, ...

    add_tool_commands(sub)

    forget = sub.add_parser(
        "forget",
        help="forget a shopper (GDPR erasure) in the pipeline's state",
        description="Write a forget request to <topic>.control. The member holding the "
        "shopper's partition drops their identity, carts, browsing and timers and writes "
        "changelog tombstones; an address is sent as its SHA-256 only, to every partition "
        "(a shopper's carts may be on any). Journey's own data is not deleted: ask Ofsys. "
        "See docs/operations.md, 'Forgetting a shopper'.",
    )
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", metavar="ADDRESS", help="every cart and visit tracked for it")
    who.add_argument("--cart", metavar="ID", help="one cart, with its identity and browsing")
    forget.add_argument(
        "--bootstrap-servers", help="default: 127.0.0.1:9092 [env: OFSYS_KAFKA_BOOTSTRAP_SERVERS]"
    )
    forget.add_argument("--topic", help="the pipeline's input topic [env: OFSYS_TOPIC]")
    forget.add_argument(
        "--partitioner", help="as the pipeline's (default: murmur2) [env: OFSYS_PARTITIONER]"
    )
    forget.set_defaults(func=cmd_forget)

    from .inspect.commands import add_commands  # explain, replay: read-side commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Any = args.func
    try:
        return int(func(args))
    except (ConfigError, BrokerMissingError) as exc:
        fail(str(exc))
    except PipelineError as exc:
        logs.fatal(f"exiting: {exc}")
        return 1
    except Exception:
        logs.fatal("exiting on an unexpected error", exc_info=True)
        return 1
