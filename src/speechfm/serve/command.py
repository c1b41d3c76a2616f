"""CLI verb `speechfm serve`."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("Serve models (transcription: own, OpenAI-compatible and streaming; attribution) and LUR "
        "reports over HTTP with a web page.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_lm, add_tracking

    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--models", type=Path, dest="models_dir",
                   help="folder of fine-tuned model folders (transformers save_pretrained)")
    add_tracking(p)  # the store whose registered models are served (a missing one: none)
    p.add_argument("--reports", type=Path, dest="reports_dir",
                   help="folder of LUR report folders written by 'speechfm lur'")
    p.add_argument("--token-file", type=Path, help="file holding the bearer token for "
                   "attribution and writes (or set $SPEECHFM_SERVE_TOKEN)")
    p.add_argument("--preload", action="append", default=None, metavar="MODEL",
                   help="load this model at start-up (repeatable)")
    p.add_argument("--max-upload-mb", type=float, help="upload size limit (default 50)")
    p.add_argument("--max-audio-seconds", type=float,
                   help="audio duration limit for transcription (default 600)")
    p.add_argument("--max-batch", type=int, help="clips per forward pass (default 8)")
    p.add_argument("--max-wait-ms", type=float, help="how long a batch waits to fill (default 10)")
    p.add_argument("--runtime", choices=["torch", "onnx"],
                   help="torch (default) or onnx: ONNX Runtime on the graphs of 'speechfm export "
                   "--onnx' (written by 'speechfm register' too)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "int8"],
                   help="inference precision (int8: torch dynamic quantization, or the ONNX "
                   "MatMul-only int8 graph; bfloat16: torch only)")
    p.add_argument("--threads", type=int,
                   help="intra-op threads of each inference worker (default: every core "
                   "available)")
    p.add_argument("--inference-workers", type=int,
                   help="batches of one model run at once (default: onnx one per core, torch 1)")
    add_lm(p, defaults=False)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from speechfm.core.errors import SpeechfmError
    from speechfm.core.tracking import enabled, tracking_uri
    from speechfm_api import Settings, create_app

    token = None
    if args.token_file:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SpeechfmError(f"cannot read the token file: {exc.strerror}",
                                path=args.token_file) from None
    uri = tracking_uri(args.tracking_uri)
    for folder in (args.models_dir, args.reports_dir):
        if folder is not None and not folder.is_dir():
            raise SpeechfmError("no such folder", path=folder)
    settings = Settings.from_env(
        models_dir=args.models_dir, reports_dir=args.reports_dir, token=token,
        tracking_uri=uri if enabled(uri) else None,
        preload=tuple(args.preload) if args.preload else None,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024) if args.max_upload_mb else None,
        max_audio_seconds=args.max_audio_seconds, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, runtime=args.runtime, dtype=args.dtype,
        threads=args.threads, inference_workers=args.inference_workers, lm=args.lm, alpha=args.alpha,
        beta=args.beta, beam_width=args.beam_width,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info",
                timeout_graceful_shutdown=5)
    return 0
