"""CLI verb `speechfm lur`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

HELP = "Layer Utilization Rate of a wav2vec2 CTC model from Integrated Gradients of every layer."

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_model, add_tracking

    add_model(p)
    p.add_argument("--data", type=Path, required=True,
                   help="test utterances: a labeled TSV, a fairseq manifest or a folder of audio")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: reports/lur/<model folder name>)")
    p.add_argument("--layers", default="all", help="'all' or 1-based layers, e.g. '1,3,5-8'")
    p.add_argument("--steps", type=int, default=50, help="IG interpolation steps")
    p.add_argument("--method", default="gausslegendre",
                   help="IG quadrature, as captum names it (gausslegendre, riemann_trapezoid, ...)")
    p.add_argument("--chunk", type=int, default=0,
                   help="interpolation steps per forward (default 0: as many as ~2 GB of "
                        "activations allow; lower it if memory runs out)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--target-batching", default="auto",
                   help="the per-character backwards: one vmapped backward (batched) or one "
                        "after another (loop); auto (default): batched on a GPU, loop on CPU; "
                        "the attributions are the same")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="precision the attributions are computed in (default float32)")
    p.add_argument("--utterances", type=int, default=None,
                   help="analyse the first N utterances (continue later with a larger N and "
                        "--resume); default: all")
    p.add_argument("--save-every", type=int, default=10,
                   help="save the running sums every N utterances")
    p.add_argument("--resume", action="store_true",
                   help="continue the analysis saved in the report folder")
    add_tracking(p, experiment="lur")


def run(args: argparse.Namespace) -> int:
    from speechfm.core.errors import SpeechfmError
    from speechfm.core.tracking import start_run
    from speechfm.interpret.lur import LurRun, analyse, resolve_device

    device = resolve_device(args.device)  # before the report folder is touched
    if args.steps < 2 or args.chunk < 0 or args.save_every < 1:
        raise SpeechfmError("--steps must be >= 2, --save-every >= 1 and --chunk >= 0")
    out = args.out or Path("reports/lur") / args.model.resolve().name
    cfg = LurRun(model_dir=args.model, data=args.data, out=out, layers=args.layers,
                 steps=args.steps, method=args.method, chunk=args.chunk, device=device,
                 target_batching=args.target_batching,
                 dtype=args.dtype, save_every=args.save_every, utterances=args.utterances,
                 resume=args.resume)
    report = analyse(cfg)
    params = {"model": report["model_path"], "data": report["data"],
              "utterances": report["utterances"], **report["settings"]}
    with start_run(args.experiment, run_name=f"lur-{report['model']}", params=params,
                   uri=args.tracking_uri) as mlrun:
        for layer, value in zip(report["layers"], report["lur"]):
            mlrun.log_metrics({"lur": value}, step=layer)
        mlrun.log_metrics({"completeness_error_max": report["completeness_error"]["max"]})
        for name in ("lur.json", "lur.svg", "lur.png"):
            mlrun.log_artifact(out / name)
        run_id = mlrun.run_id
    summary = {"report": str(out), "mlflow_run": run_id, "utterances": report["utterances"],
               "lur": dict(zip(report["layers"], [round(v, 2) for v in report["lur"]])),
               "completeness_error_max": report["completeness_error"]["max"]}
    print(json.dumps(summary, indent=1))
    return 0
