"""The tools' commands: `journey-emulator`, `produce`, `demo` and `bench`.

Registered on the CLI's subparsers by `add_commands`; each command imports what it runs
when it runs, so `ofsys-pipeline run` never loads a tool.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import config, logs
from ..cli_args import FRACTION, INT, NON_NEGATIVE, PORT, POSITIVE, POSITIVE_INT, sizes, subcommand
from ..errors import ConfigError


def cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import serve

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

    from ..runtime import topics
    from ..source.schemas import load_family
    from .producing import client_config, produce
    from .traffic import Encoder, ShopTraffic, encoded

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
    from .demo import run_demo

    return run_demo(duration_s=args.duration, rate=args.rate, metrics_port=args.metrics_port)


def cmd_bench(args: argparse.Namespace) -> int:
    common = {"partitions": args.partitions, "changelog": not args.no_changelog}
    if args.backlog:
        from .backlog_bench import run_backlog

        return run_backlog(
            sizes=args.backlog,
            shape=args.backlog_shape,
            visitors=args.backlog_visitors,
            journey_latency_ms=args.journey_latency_ms,
            **common,
        )
    from .bench import run_bench, run_rate

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


def add_commands(sub: Any) -> None:
    """The tools' subcommands on the CLI's subparsers."""
    emulator = subcommand(
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

    produce = subcommand(
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

    demo = subcommand(
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
        type=sizes,
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
