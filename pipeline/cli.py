"""`ofsys-pipeline` command line: run, demo, produce, journey-emulator, bench, forget.

Bad usage or configuration prints one line and exits 2; the account key is never
echoed (config errors describe its shape, not its value).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from . import __version__, config, config_values, logs
from .errors import BrokerMissingError, ConfigError, PipelineError

EXIT_CONFIG = 2
T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):  # name the options only: a value may be a secret
            names = [a.split("=", 1)[0] for a in message[len(prefix) :].split() if a[:1] == "-"]
            message = prefix + (" ".join(names) or "(values withheld)")
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"ofsys-pipeline: error: {message}\n")
    raise SystemExit(EXIT_CONFIG)


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


def cmd_emulator(args: argparse.Namespace) -> int:
    from .tools.emulator import serve

    key = args.account_key or os.environ.get("OFSYS_ACCOUNT_KEY")
    if not key:
        raise ConfigError("--account-key or OFSYS_ACCOUNT_KEY is required")
    config.check_account_key(key)
    logs.setup("INFO")
    serve(account_key=key, host=args.host, port=args.port)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from .runtime import topics
    from .source.schemas import load_family
    from .tools.producing import client_config, produce
    from .tools.traffic import Encoder, ShopTraffic, encoded

    logs.setup("WARNING")
    bootstrap = args.bootstrap_servers
    topics.ensure(AdminClient(client_config(bootstrap)), args.topic, args.partitions)
    traffic = ShopTraffic(seed=args.seed, duplicate_rate=args.duplicates, invalid_rate=args.invalid)
    encode = Encoder(load_family("site_event"), args.schema_registry_url)
    producer = Producer(
        client_config(bootstrap, **{"linger.ms": 20, "partitioner": "murmur2_random"})
    )
    sent = produce(producer, args.topic, encoded(traffic, encode), args.count, args.rate)
    sys.stdout.write(f'{{"produced": {sent}, "topic": "{args.topic}"}}\n')
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .tools.demo import run_demo

    return run_demo(duration_s=args.duration, rate=args.rate, metrics_port=args.metrics_port)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.journey_latency_ms < 0:
        _fail(f"--journey-latency-ms must be >= 0: {args.journey_latency_ms}")
    common = {"partitions": args.partitions, "changelog": not args.no_changelog}
    if args.backlog:
        from .tools.backlog_bench import run_backlog

        return run_backlog(
            sizes=args.backlog,
            shape=args.backlog_shape,
            visitors=args.backlog_visitors,
            journey_latency_ms=args.journey_latency_ms,
            **common,
        )
    from .tools.bench import run_bench, run_rate

    if args.rate is not None:
        return run_rate(
            shape=args.shape,
            rate=args.rate,
            duration_s=args.duration,
            journey_latency_ms=args.journey_latency_ms,
            **common,
        )
    return run_bench(
        shape=args.shape,
        events=args.events,
        runs=args.runs,
        journey_latency_ms=args.journey_latency_ms,
        **common,
    )


def cmd_forget(args: argparse.Namespace) -> int:
    """GDPR erasure: a forget request to the control topic (runtime/control.py)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from .runtime.control import request_forget

    topic = args.topic or os.environ.get("OFSYS_TOPIC")
    if not topic:
        _fail("--topic or OFSYS_TOPIC is required")
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


def _sizes(text: str) -> list[int]:
    """`100000,400000` -> [100000, 400000]: backlog sizes, each a positive integer."""
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def _typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type` from a config value parser: a bad value reads as "argument
    --port: must be a port number from 0 to 65535" (one line, exit 2)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.strip("_")
    return convert


PORT = _typed(config_values._port)
POSITIVE_INT = _typed(config_values._positive_int)
INT = _typed(config_values._any_int)
POSITIVE = _typed(config_values._positive_float)
FRACTION = _typed(config_values._fraction)
NON_NEGATIVE = _typed(config_values._non_negative_float)


class _Help(argparse.HelpFormatter):
    """Each option's help ends with its default, when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _subcommand(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=description, formatter_class=_Help
    )
    return parser


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

    emulator = _subcommand(
        sub,
        "journey-emulator",
        "serve the Journey contract locally",
        "Serve a local Journey endpoint that speaks the contract (docs/journey-contract.md): "
        "POST /v1/journey with the account key as Bearer token; GET /ledger, GET and "
        "POST /faults (fault injection), GET /metrics. Runs until Ctrl-C or SIGTERM.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulator.add_argument("--port", type=PORT, default=8080, help="port (0: any free port)")
    emulator.add_argument(
        "--account-key",
        help="the key clients must send, 32 letters and digits [env: OFSYS_ACCOUNT_KEY]",
    )
    emulator.set_defaults(func=cmd_emulator)

    produce = _subcommand(
        sub,
        "produce",
        "produce realistic shop traffic",
        "Produce realistic shop traffic (visitors browsing, carting, buying) as Avro "
        "site events, keyed by cart id; creates the topic if it is missing.",
    )
    produce.add_argument(
        "--bootstrap-servers", default="127.0.0.1:9092", help="Kafka bootstrap servers"
    )
    produce.add_argument("--topic", required=True, help="topic to produce to")
    produce.add_argument(
        "--partitions", type=POSITIVE_INT, default=4, help="partitions, if the topic is created"
    )
    produce.add_argument("--count", type=POSITIVE_INT, default=10_000, help="events to produce")
    produce.add_argument("--rate", type=POSITIVE, help="events per second (default: flat out)")
    produce.add_argument(
        "--duplicates", type=FRACTION, default=0.0, help="share of events replayed, 0..1"
    )
    produce.add_argument("--invalid", type=FRACTION, default=0.0, help="share of bad records, 0..1")
    produce.add_argument(
        "--schema-registry-url",
        help="Confluent wire format via this registry (default: single-object encoding)",
    )
    produce.add_argument(
        "--seed", type=INT, default=1, help="random seed: the same seed, the same traffic"
    )
    produce.set_defaults(func=cmd_produce)

    demo = _subcommand(
        sub,
        "demo",
        "everything on an embedded broker, with a live view",
        "Start an embedded Kafka-protocol broker, the Journey emulator, the traffic "
        "generator and the pipeline; show events/s, lag and deliveries each second, "
        "serve the pipeline's /metrics, then drain and print a summary.",
    )
    demo.add_argument(
        "--duration",
        type=POSITIVE,
        default=60.0,
        help="how long to run, in seconds; Ctrl-C stops earlier",
    )
    demo.add_argument("--rate", type=POSITIVE, default=2000.0, help="events per second")
    demo.add_argument(
        "--metrics-port",
        type=PORT,
        default=9400,
        help="port of the pipeline's /metrics, /healthz and /readyz (taken: any free port; 0: off)",
    )
    demo.set_defaults(func=cmd_demo)

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

    bench = sub.add_parser(
        "bench",
        help="measure `ofsys-pipeline run` from outside against the consume+decode ceiling",
        description="Runs `python -m pipeline run` as a child process on an embedded broker "
        "and measures it from outside (docs/benchmarks.md): events/s against the consume + "
        "decode ceiling; with --rate, end-to-end latency; with --backlog, RSS and restore.",
    )
    bench.add_argument(
        "--shape",
        choices=("default", "heavy-carts"),  # tools.bench_shapes.SHAPES (a unit test checks)
        default="default",
        help="traffic shape (docs/benchmarks.md)",
    )
    bench.add_argument(
        "--events", type=POSITIVE_INT, default=200_000, help="events on the topic (default shape)"
    )
    bench.add_argument("--partitions", type=POSITIVE_INT, default=4, help="input partitions")
    bench.add_argument("--runs", type=POSITIVE_INT, default=1, help="runs on the same records")
    bench.add_argument(
        "--no-changelog", action="store_true", help="run the pipeline with OFSYS_CHANGELOG=false"
    )
    bench.add_argument(
        "--journey-latency-ms",
        type=NON_NEGATIVE,
        default=0.0,
        metavar="MS",
        help="the Journey emulator delays every response by MS",
    )
    bench.add_argument(
        "--rate",
        type=POSITIVE,
        help="instead: produce live at this many events/s for --duration seconds "
        "and report end-to-end latency percentiles",
    )
    bench.add_argument("--duration", type=POSITIVE, default=30.0, help="with --rate")
    bench.add_argument(
        "--backlog",
        metavar="N[,N...]",
        type=_sizes,
        help="instead: for each N, a backlog of N (see --backlog-shape) produced before "
        "`ofsys-pipeline run` starts; its peak and final RSS while it catches up, then "
        "the restore rate of a restarted process",
    )
    bench.add_argument(
        "--backlog-shape",
        choices=("traffic", "carts"),
        default="traffic",
        help="traffic: N events of shop traffic; carts: N carts of two Added Product "
        "events each, the first with the e-mail (2N events)",
    )
    bench.add_argument(
        "--backlog-visitors",
        type=POSITIVE_INT,
        default=20_000,
        help="concurrent visitors of the traffic backlog, the same for every N",
    )
    bench.set_defaults(func=cmd_bench)

    from .inspect.commands import add_commands  # explain, replay: read-side commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Any = args.func
    try:
        return int(func(args))
    except (ConfigError, BrokerMissingError) as exc:
        _fail(str(exc))
    except PipelineError as exc:
        logs.fatal(f"exiting: {exc}")
        return 1
    except Exception:
        logs.fatal("exiting on an unexpected error", exc_info=True)
        return 1
