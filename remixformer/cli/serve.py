"""``remixformer serve``: the web service and its page for one checkpoint.

    remixformer serve --checkpoint best.safetensors [--host 127.0.0.1] [--port 8000]

``--backend onnxruntime`` serves an exported .onnx file (``remixformer export``) instead: the same
answers, no attention overlays.

The model is loaded once, before the server starts; a checkpoint that does not load, or a model that
cannot predict a made-up case, stops the start with its reason. Page at ``/``, API documentation at
``/docs``, docs/serving.md for the endpoints.
"""

from __future__ import annotations

import argparse
import os

from remixformer.cli.common import add_device_arg, add_model_file_args, device_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a checkpoint over HTTP (API and web page)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_file_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="inference threads (default 1)")
    p.add_argument(
        "--queue-size", type=int, default=8, help="requests that may wait for a worker before 503 (default 8)"
    )
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="per image file (default 20 MiB)")
    p.add_argument(
        "--max-uploads", type=int, default=16, help="request bodies received at once before 503 (default 16)"
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="seconds a client may send nothing in the middle of its body before 408 (default 10)",
    )
    p.add_argument(
        "--body-timeout", type=float, default=120.0, help="seconds for a whole request body (default 120)"
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=None,
        help="width x height limit of an image (default 100,000,000)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: CPU cores / workers, at least 1)"
    )
    p.add_argument("--tta", action="store_true", help="average with horizontally flipped images")
    add_device_arg(p, default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if args.queue_size < 0:
        raise ValueError(f"--queue-size must be >= 0, got {args.queue_size}")
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if args.max_uploads < 1:
        raise ValueError(f"--max-uploads must be at least 1, got {args.max_uploads}")
    for name in ("read_timeout", "body_timeout"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")

    import torch
    import uvicorn

    from remixformer.data.config import DEFAULT_MAX_IMAGE_PIXELS
    from remixformer.serving.app import create_app
    from remixformer.serving.predictor import Predictor

    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    torch.set_num_threads(threads)
    pixels = args.max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS
    print(f"loading {args.checkpoint} ...", flush=True)
    options: dict = {"tta_flip": args.tta, "max_image_pixels": pixels}
    if args.backend == "onnxruntime":
        options["threads"] = threads
    predictor = Predictor.load(args.checkpoint, args.backend, device=device_from_args(args), **options)
    app = create_app(
        predictor,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_image_pixels=pixels,
        workers=args.workers,
        queue_size=args.queue_size,
        max_uploads=args.max_uploads,
        read_timeout=args.read_timeout,
        body_timeout=args.body_timeout,
    )
    if app.state.health.self_check_error:
        raise ValueError(f"{args.checkpoint}: {app.state.health.self_check_error}")
    ident = predictor.identity
    print(
        f"model {ident.get('file')} ({ident.get('preset')}, modalities {predictor.modalities}, "
        f"backend {predictor.backend}, "
        f"sha256 {str(ident.get('sha256'))[:12]}); {args.workers} worker(s) x {threads} thread(s), "
        f"queue {args.queue_size}"
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: the service has no authentication; put it behind one")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"page: http://{host}:{args.port}/   API docs: http://{host}:{args.port}/docs", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
