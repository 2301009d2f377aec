"""`ofsys-pipeline` command line: run, demo, produce, journey-emulator, bench.

Bad usage or configuration prints one line and exits 2; the account key is never
echoed (config errors describe its shape, not its value).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__, config, logs
from .errors import BrokerMissingError, ConfigError, PipelineError

EXIT_CONFIG = 2


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
    serve(account_key=key, host=args.host, port=args.port)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from .runtime import topics
    from .source.schemas import load_family
    from .tools.producing import produce
    from .tools.traffic import Encoder, ShopTraffic, encoded

    bootstrap = args.bootstrap_servers
    topics.ensure(AdminClient({"bootstrap.servers": bootstrap}), args.topic, args.partitions)
    traffic = ShopTraffic(seed=args.seed, duplicate_rate=args.duplicates, invalid_rate=args.invalid)
    encode = Encoder(load_family("site_event"), args.schema_registry_url)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"}
    )
    sent = produce(producer, args.topic, encoded(traffic, encode), args.count, args.rate)
    sys.stdout.write(f'{{"produced": {sent}, "topic": "{args.topic}"}}\n')
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .tools.demo import run_demo

    return run_demo(duration_s=args.duration, rate=args.rate)


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


def _positive(kind: type[int] | type[float]) -> Any:
    """An argparse type: a number of `kind` above zero (one clear line and exit 2 if not)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
        return value

    return parse


def _sizes(text: str) -> list[int]:
    """`100000,400000` -> [100000, 400000]: backlog sizes, each a positive integer."""
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ofsys-pipeline", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="consume site events and feed Journey",
        description="Consume Avro site events from Kafka as a consumer-group "
        "member and deliver Journey commands. Every option is also an "
        "environment variable; OFSYS_KAFKA_<PROPERTY> passes <property> to "
        "librdkafka (OFSYS_KAFKA_SESSION_TIMEOUT_MS -> session.timeout.ms).",
    )
    config.add_arguments(run)
    run.set_defaults(func=cmd_run)

    emulator = sub.add_parser("journey-emulator", help="serve the Journey contract locally")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8080)
    emulator.add_argument("--account-key", help="[env: OFSYS_ACCOUNT_KEY]")
    emulator.set_defaults(func=cmd_emulator)

    produce = sub.add_parser("produce", help="produce realistic shop traffic")
    produce.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    produce.add_argument("--topic", required=True)
    produce.add_argument("--partitions", type=int, default=4, help="if the topic is created")
    produce.add_argument("--count", type=int, default=10_000)
    produce.add_argument("--rate", type=float, help="events per second (default: flat out)")
    produce.add_argument("--duplicates", type=float, default=0.0, help="replay rate, 0..1")
    produce.add_argument("--invalid", type=float, default=0.0, help="bad record rate, 0..1")
    produce.add_argument("--schema-registry-url", help="Confluent wire format via this registry")
    produce.add_argument("--seed", type=int, default=1)
    produce.set_defaults(func=cmd_produce)

    demo = sub.add_parser("demo", help="everything on an embedded broker, with a live view")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds (Ctrl-C stops)")
    demo.add_argument("--rate", type=float, default=2000.0, help="events per second")
    demo.set_defaults(func=cmd_demo)

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
    bench.add_argument("--events", type=_positive(int), default=200_000)
    bench.add_argument("--partitions", type=_positive(int), default=4)
    bench.add_argument("--runs", type=_positive(int), default=1, help="runs on the same records")
    bench.add_argument(
        "--no-changelog", action="store_true", help="run the pipeline with OFSYS_CHANGELOG=false"
    )
    bench.add_argument(
        "--journey-latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="the Journey emulator delays every response by MS",
    )
    bench.add_argument(
        "--rate",
        type=_positive(float),
        help="instead: produce live at this many events/s for --duration seconds "
        "and report end-to-end latency percentiles",
    )
    bench.add_argument("--duration", type=_positive(float), default=30.0, help="with --rate")
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
        type=_positive(int),
        default=20_000,
        help="concurrent visitors of the traffic backlog, the same for every N",
    )
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Any = args.func
    try:
        return int(func(args))
    except (ConfigError, BrokerMissingError) as exc:
        _fail(str(exc))
    except PipelineError as exc:
        sys.stderr.write(f"ofsys-pipeline: {exc}\n")
        return 1
