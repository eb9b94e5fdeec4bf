"""`python scripts/serve.py --checkpoint RUN [--checkpoint RUN2 ...]`: the translation server.

Serves the HTTP API and the attention page of `seq2seq.serving.app` with uvicorn, on loopback unless
`--host` says otherwise. SIGTERM (or Ctrl-C) shuts it down cleanly: it stops accepting
connections, finishes the requests in flight, then exits 0.

argparse rather than Hydra, and torch is imported only after the arguments are parsed: `--help`
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from seq2seq.cli.common import (
    add_device_arguments,
    beam_size,
    positive_int,
    run_cli,
    setup_logging,
)
from seq2seq.config import BEAM_SIZE
from seq2seq.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("seq2seq.serve")


def build_parser() -> argparse.ArgumentParser:
    from seq2seq.serving.settings import Batching, Limits

    parser = argparse.ArgumentParser(
        description="Serve trained checkpoints over HTTP: POST /translate, GET /models, "
                    "GET /health, and at / a page that shows the attention of each translation.",
        epilog="The first checkpoint is the default model; requests choose another by its id "
               "(its run dir's name), listed by GET /models. API docs: /docs.")
    parser.add_argument("--checkpoint", action="append", required=True, metavar="PATH",
                        help="a checkpoint file, or a run dir (its final model: "
                             "checkpoints/best.pt, or averaged.pt where checkpoint averaging won "
                             "on val); "
                             "repeat to serve several models")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=port, default=8000, help="(default: %(default)s)")
    add_device_arguments(parser)
    limits = parser.add_argument_group("requests")
    limits.add_argument("--max-lines", type=positive_int, default=Limits.max_lines, metavar="N",
                        help="lines per request (default: %(default)s)")
    limits.add_argument("--max-chars", type=positive_int, default=Limits.max_chars, metavar="N",
                        help="characters per line (default: %(default)s)")
    limits.add_argument("--max-beam", type=beam_size, default=Limits.max_beam, metavar="N",
                        help="largest beam a request may ask for, at most "
                             f"{BEAM_SIZE.high:g} (default: %(default)s)")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--batch-window-ms", type=non_negative_float,
                          default=Batching.window_ms, metavar="MS",
                          help="how long a request waits for others to share its batch; 0 "
                               "decodes what has arrived at once (default: %(default)s)")
    batching.add_argument("--max-batch-tokens", type=positive_int,
                          default=Batching.max_batch_tokens, metavar="N",
                          help="source subwords per batch; 1 decodes one request at a time "
                               "(default: %(default)s)")
    batching.add_argument("--max-queued-lines", type=positive_int,
                          default=Batching.max_queued_lines, metavar="N",
                          help="lines waiting to be decoded, at least --max-lines; beyond, "
                               "requests get 503 with Retry-After (default: %(default)s)")
    return parser


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in [0, 65535], got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def check_queue_holds_a_request(args: argparse.Namespace) -> None:
    """A request of more lines than the queue holds is refused with 503 every time it is sent,
    however idle the server: refuse such settings at start instead."""
    if args.max_queued_lines < args.max_lines:
        raise ConfigError(f"--max-queued-lines {args.max_queued_lines} is less than --max-lines "
                          f"{args.max_lines}: a request of more lines than the queue holds "
                          "would get 503 forever; make --max-queued-lines at least --max-lines")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_cli(lambda: serve(args))


def serve(args: argparse.Namespace) -> None:
    from seq2seq.serving.http_server import bind, http_server

    # Both checks come before torch is imported and the models load: a busy port or a bad
    # --host is one line at once.
    check_queue_holds_a_request(args)
    sockets = bind(args.host, args.port)
    setup_logging(logging.INFO)
    try:
        app = build_app(args)
        for sock in sockets:
            host, port = sock.getsockname()[:2]
            log.info("listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)
        # uvicorn handles SIGTERM and Ctrl-C itself while it runs (stop accepting, finish what
        # is in flight, shut down), then raises the signal again: by then the work is done, so
        # the command's own SIGTERM exit is replaced by a plain return.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        http_server(app).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
    log.info("server stopped")


def build_app(args: argparse.Namespace) -> FastAPI:
    """The app serving the checkpoints, with the options' limits and batching."""
    from seq2seq.inference.translator import Translator
    from seq2seq.runtime import set_threads
    from seq2seq.serving.app import ServedModel, create_app, model_ids
    from seq2seq.serving.settings import Batching, Limits

    set_threads(args.threads)
    translators = [Translator.from_checkpoint(path, args.device, quantize=args.quantize)
                   for path in args.checkpoint]
    ids = model_ids([translator.checkpoints[0] for translator in translators])
    models = [ServedModel.load(model_id, translator)
              for model_id, translator in zip(ids, translators, strict=True)]
    for model in models:
        info = model.describe()
        log.info("model %s: %s->%s, %s attention, %s parameters on %s%s (%s)", model.id,
                 info["src_lang"], info["tgt_lang"], info["scorer"], f"{info['parameters']:,}",
                 info["device"], ", int8" if info["quantized"] else "",
                 model.translator.checkpoints[0])
    return create_app(
        models,
        Limits(max_lines=args.max_lines, max_chars=args.max_chars, max_beam=args.max_beam),
        Batching(window_ms=args.batch_window_ms, max_batch_tokens=args.max_batch_tokens,
                 max_queued_lines=args.max_queued_lines),
    )


if __name__ == "__main__":
    main()
