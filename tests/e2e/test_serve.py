"""The HTTP service against a real uvicorn process on 127.0.0.1: every endpoint, bad inputs, auth,
an MLflow-registered model (also through ONNX Runtime with an n-gram LM), the OpenAI-compatible
endpoint through the official `openai` client, word/segment times against the demo archive's
ground truth, WebSocket streaming (and a client that vanishes), attribution beside transcription,
a schemathesis fuzz run, a bounded load test and the web page in headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import ROOT, free_port, require, run_speechfm

pytestmark = pytest.mark.slow  # every test here starts a real service or model

TOKEN = "test-token-0123456789"
MAX_UPLOAD_BYTES = 3 * 1024 * 1024
MAX_SECONDS = 100.0
ARTIFACTS = ROOT / "test-artifacts"



def ffmpeg(*args: str) -> None:
    subprocess.run([require("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def write_report(folder: Path, model: str, lur: list[float]) -> None:
    """A report folder shaped like the `lur` stage's output (lur.json, lur.svg, lur.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True)
    (folder / "lur.json").write_text(json.dumps({  # the fields of docs/interpret.md that we read
        "model": model, "data": "test.tsv", "settings": {"steps": 50},
        "layers": list(range(1, len(lur) + 1)), "lur": lur}))
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(range(1, len(lur) + 1), lur, marker="o", label=model)
    ax.set(xlabel="layer", ylabel="LUR %")
    for suffix in ("svg", "png"):
        fig.savefig(folder / f"lur.{suffix}")
    plt.close(fig)


@pytest.fixture(scope="module")
def demo_hours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict]]]:
    """Two 60 s demo broadcast files (`speechfm synth`) with their ground truth: a radio hour
    (speech, pure music, a jingle, noise) and a TV hour (MPEG-TS with a video stream)."""
    from speechfm.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("demo-hours")
    synthesize(out, SynthConfig(seed=2, channels=2, days=1, hours_per_day=1, hour_seconds=60,
                                labeled={"train": 1, "valid": 1, "test": 1}), workers=1)
    hours = {}
    for kind, name in (("radio", "yle_radio_suomi"), ("tv", "yle_tv1")):
        (ts,) = (out / "archive").rglob(f"{name}_*.ts")
        truth = json.loads(ts.with_name(ts.stem + ".truth.json").read_text())["intervals"]
        hours[kind] = (ts, truth)
    kinds = {iv["kind"] for iv in hours["radio"][1]}
    assert {"speech", "music", "noise", "jingle"} <= kinds  # what the checks below rely on
    return hours


TOLERANCE_S = 0.3
"""How far a time may be from the ground truth (VAD decisions are 32 ms, CTC frames 20 ms)."""


def speech_blocks(truth: list[dict], gap: float = 1.0) -> list[tuple[float, float]]:
    """The truth's speech intervals, joined where less than `gap` apart (sentence pauses)."""
    blocks: list[list[float]] = []
    for iv in sorted((iv for iv in truth if iv["kind"] == "speech"), key=lambda iv: iv["start"]):
        if blocks and iv["start"] - blocks[-1][1] < gap:
            blocks[-1][1] = max(blocks[-1][1], iv["end"])
        else:
            blocks.append([iv["start"], iv["end"]])
    return [(a, b) for a, b in blocks]


def assert_follows_the_speech(spans: list[tuple[float, float]], truth: list[dict]) -> None:
    """Timed pieces of a transcript against the ground truth: each lies within a speech block
    (so none over music, noise, a jingle or silence), every block has some, and the first piece
    in a block starts, and the last ends, within `TOLERANCE_S` of the block's start and end."""
    blocks = speech_blocks(truth)
    assert spans and all(a < b for a, b in spans)
    inside = {}
    for a, b in spans:
        home = [k for k, (s, e) in enumerate(blocks)
                if s - TOLERANCE_S <= a and b <= e + TOLERANCE_S]
        assert home, f"{(a, b)} is not within any speech block {blocks}"
        inside.setdefault(home[0], []).append((a, b))
    assert sorted(inside) == list(range(len(blocks))), (spans, blocks)
    for k, (s, e) in enumerate(blocks):
        first, last = min(x[0] for x in inside[k]), max(x[1] for x in inside[k])
        assert abs(first - s) <= TOLERANCE_S and abs(last - e) <= TOLERANCE_S, ((s, e), inside[k])


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uploads made with ffmpeg: formats and rates the service must accept, and bad ones."""
    d = tmp_path_factory.mktemp("clips")
    c = {name: d / name for name in ("tone.mp3", "stereo44k.wav", "speechlike.ogg", "long.flac",
                                     "too_long.flac", "junk.bin", "empty.wav", "truncated.flac",
                                     "playlist.m3u8", "big.bin")}
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=3", "-ar", "44100", str(c["tone.mp3"]))
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=2", "-f", "lavfi", "-i", "sine=f=660:d=2",
           "-filter_complex", "amerge", "-ar", "44100", str(c["stereo44k.wav"]))
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=2:a=0.3,tremolo=f=4:d=0.9", "-ar", "22050",
           "-c:a", "libvorbis", str(c["speechlike.ogg"]))
    # 75 s: three 20 s bursts of modulated noise with 5 s of silence after each
    burst = "anoisesrc=r=16000:d=20:a=0.4:seed=1,tremolo=f=5:d=0.8,apad=pad_dur=5"
    ffmpeg("-f", "lavfi", "-i", f"{burst},aloop=loop=2:size={25 * 16000}", "-ar", "16000",
           str(c["long.flac"]))
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(MAX_SECONDS + 20),
           str(c["too_long.flac"]))
    c["junk.bin"].write_bytes(np.random.default_rng(0).bytes(4000))
    c["empty.wav"].write_bytes(b"")
    c["truncated.flac"].write_bytes(c["long.flac"].read_bytes()[:60])
    c["playlist.m3u8"].write_text(f"#EXTM3U\n#EXTINF:3,\nfile://{c['tone.mp3']}\n#EXT-X-ENDLIST\n")
    c["big.bin"].write_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1000))
    return c


@pytest.fixture(scope="module")
def stores(tiny_ctc_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What the pipeline leaves for the service: a models folder, an MLflow store holding the
    model registered by `speechfm register` (with its ONNX graphs), reports of `speechfm lur`."""
    tmp = tmp_path_factory.mktemp("serve")
    models = tmp / "models"
    shutil.copytree(tiny_ctc_model_dir, models / "tiny")
    (models / "not-a-model").mkdir()
    (models / "pickled").mkdir()  # a folder with torch pickles only is never listed or loaded
    for f in ("config.json", "vocab.json"):
        shutil.copy(tiny_ctc_model_dir / f, models / "pickled" / f)
    (models / "pickled" / "pytorch_model.bin").write_bytes(b"not loaded")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    # the pipeline's own steps: `speechfm register` puts the model into MLflow, `speechfm lur`
    # writes a report (both with cwd=tmp so MLflow artifacts land there)
    done = run_speechfm("register", models / "tiny", "--name", "tiny-registered",
                        "--tracking-uri", uri, cwd=tmp)
    assert done.returncode == 0, done.stderr
    data = tmp / "lur-data"
    data.mkdir()
    for i, freq in enumerate((300, 520)):
        ffmpeg("-f", "lavfi", "-i", f"sine=f={freq}:d=1", "-ar", "16000", str(data / f"u{i}.flac"))
    reports = tmp / "reports"
    done = run_speechfm("lur", "--model", models / "tiny", "--data", data, "--out",
                        reports / "tiny-lur", "--steps", "4", "--tracking-uri", uri, cwd=tmp)
    assert done.returncode == 0, done.stderr
    write_report(reports / "base-lur", "base", [70.0, 72.5, 60.1])
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    return {"tmp": tmp, "models": models, "uri": uri, "reports": reports, "token": token_file}


@pytest.fixture(scope="module")
def service(stores: dict):
    """`speechfm serve` in a subprocess with a models folder, an MLflow store, reports and a token;
    yields (base URL, process); stopped by PID at the end."""
    with serving(stores["tmp"], "--models", stores["models"], "--tracking-uri", stores["uri"],
                 "--reports", stores["reports"], "--token-file", stores["token"],
                 "--preload", "tiny",
                 "--max-upload-mb", MAX_UPLOAD_BYTES / 1024 / 1024,
                 "--max-audio-seconds", MAX_SECONDS, env={"SPEECHFM_SERVE_MAX_JOBS": "4",
                                                    "SPEECHFM_SERVE_MAX_QUEUED_JOBS": "1"}) as s:
        yield s


@contextlib.contextmanager
def serving(tmp: Path, *args: object, env: dict[str, str] | None = None, log_name: str = "server"):
    """`speechfm serve ARGS` on a free port (cwd `tmp`) until ready; yields (base URL, process);
    stopped by PID; its log must hold no traceback."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "SPEECHFM_SERVE_CACHE_DIR": str(tmp / "cache"), **(env or {})}
    log_path = tmp / f"{log_name}.log"
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "speechfm", "serve", "--port", str(port),
                             *map(str, args)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/v1/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.5)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    text = log_path.read_text()
    assert "Traceback" not in text and "Task exception" not in text, text


def reference_transcript(model_dir: Path, path: Path) -> str:
    """The model's greedy transcript computed directly with transformers (ffmpeg to 16 kHz)."""
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    raw = subprocess.run([require("ffmpeg"), "-loglevel", "error", "-i", str(path), "-ac", "1",
                          "-ar", "16000", "-f", "s16le", "-"], capture_output=True, check=True)
    audio = np.frombuffer(raw.stdout, "<i2").astype(np.float32) / 32768
    processor = Wav2Vec2Processor.from_pretrained(model_dir)
    model = Wav2Vec2ForCTC.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        x = processor(audio, sampling_rate=16000, return_tensors="pt").input_values
        ids = model(x).logits.argmax(-1)[0]
    return processor.decode(ids)


def post(base: str, path: str, file: Path, **kwargs) -> httpx.Response:
    with file.open("rb") as f:
        return httpx.post(f"{base}{path}", files={"file": (file.name, f)}, timeout=120, **kwargs)


def test_health_ready_models_and_page(service) -> None:
    base, _ = service
    assert httpx.get(f"{base}/v1/health").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/v1/ready").json()
    assert ready["ready"] and ready["loaded"] == ["tiny"]
    listing = httpx.get(f"{base}/v1/models").json()
    models = {m["name"]: m for m in listing["models"]}
    assert set(models) == {"tiny", "tiny-registered"}
    assert listing["object"] == "list"  # the OpenAI listing in the same body
    assert {m["id"]: m["owned_by"] for m in listing["data"]} == {
        "tiny": "speechfm-dir", "tiny-registered": "speechfm-mlflow"}
    assert all(m["object"] == "model" and m["created"] > 1.6e9 for m in listing["data"])
    assert models["tiny"]["source"] == "dir"
    assert models["tiny-registered"] == {"name": "tiny-registered", "source": "mlflow",
                                         "version": "1"}
    page = httpx.get(f"{base}/")
    assert page.status_code == 200 and '<meta charset="utf-8">' in page.text
    assert httpx.get(f"{base}/static/app.js").status_code == 200
    schema = httpx.get(f"{base}/openapi.json").json()
    assert "/v1/models/{name}/transcribe" in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


@pytest.mark.parametrize("clip", ["tone.mp3", "stereo44k.wav", "speechlike.ogg"])
def test_transcribe_formats_match_the_model(service, clips, tiny_ctc_model_dir, clip) -> None:
    base, _ = service
    r = post(base, "/v1/models/tiny/transcribe", clips[clip])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == reference_transcript(tiny_ctc_model_dir, clips[clip])
    assert body["text"]  # random weights still emit characters for these clips
    assert len(body["chunks"]) == 1 and body["chunks"][0]["start"] == 0.0
    assert body["seconds"] == pytest.approx(body["chunks"][0]["end"], abs=0.01)
    # word times: CTC frames of 20 ms, in order, inside the chunk; they spell the text
    words = body["chunks"][0]["words"]
    assert " ".join(w["word"] for w in words) == " ".join(body["text"].split())
    assert all(0 <= w["start"] < w["end"] <= body["seconds"] + 0.02 for w in words)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words))
    assert all(round(w["start"] / 0.02, 6).is_integer() for w in words)
    assert " ".join(seg["text"] for seg in body["segments"]) == " ".join(body["text"].split())


def test_registered_mlflow_model_transcribes_like_the_folder(service, clips) -> None:
    base, _ = service
    a = post(base, "/v1/models/tiny/transcribe", clips["tone.mp3"]).json()
    b = post(base, "/v1/models/tiny-registered/transcribe", clips["tone.mp3"]).json()
    assert b["model"] == "tiny-registered" and b["text"] == a["text"]


def test_long_audio_is_cut_by_the_music_rejecting_vad(service, demo_hours) -> None:
    """A 60 s demo broadcast (MPEG-TS) with pure music, a jingle and noise: the chunks the model
    decodes cover the speech and nothing else, so music and noise give no text."""
    base, _ = service
    ts, truth = demo_hours["radio"]
    body = post(base, "/v1/models/tiny/transcribe", ts).json()
    assert body["seconds"] == pytest.approx(60.0, abs=0.1)
    chunks = body["chunks"]
    assert all(0 < c["end"] - c["start"] <= 30.0 for c in chunks)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(chunks))
    assert_follows_the_speech([(c["start"], c["end"]) for c in chunks], truth)
    assert body["text"] == " ".join(c["text"] for c in chunks if c["text"])
    assert_follows_the_speech([(g["start"], g["end"]) for g in body["segments"]], truth)


@pytest.mark.parametrize("clip, code", [
    ("junk.bin", "not_audio"), ("empty.wav", "empty_upload"), ("truncated.flac", "not_audio"),
    ("playlist.m3u8", "not_audio"),
])
def test_bad_uploads_get_a_clear_422(service, clips, clip, code) -> None:
    base, _ = service
    r = post(base, "/v1/models/tiny/transcribe", clips[clip])
    assert r.status_code == 422, r.text
    assert r.json()["error"] == code


def test_limits_answer_413_naming_the_limit(service, clips) -> None:
    base, _ = service
    r = post(base, "/v1/models/tiny/transcribe", clips["big.bin"])
    assert r.status_code == 413 and r.json()["limit"] == "max_upload_bytes"
    assert r.json()["max"] == MAX_UPLOAD_BYTES
    r = post(base, "/v1/models/tiny/transcribe", clips["too_long.flac"])
    assert r.status_code == 413 and r.json()["limit"] == "max_audio_seconds"

    def chunked():  # no Content-Length: the limit is enforced while the body streams in
        yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n"
        for _ in range(MAX_UPLOAD_BYTES // 65536 + 2):
            yield b"\0" * 65536

    r = httpx.post(f"{base}/v1/models/tiny/transcribe", content=chunked(), timeout=60,
                   headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and r.json()["limit"] == "max_upload_bytes"


def test_names_are_validated(service, clips) -> None:
    base, _ = service
    assert post(base, "/v1/models/nope/transcribe", clips["tone.mp3"]).status_code == 404
    assert post(base, "/v1/models/pickled/transcribe", clips["tone.mp3"]).status_code == 404
    assert post(base, "/v1/models/not-a-model/transcribe", clips["tone.mp3"]).status_code == 404
    for name in ("..", ".hidden", "a%2F..%2Fb", "%2E%2E"):
        r = post(base, f"/v1/models/{name}/transcribe", clips["tone.mp3"])
        assert r.status_code in (404, 422), (name, r.status_code)
    for name in ("..", "%2E%2E", "..%2Ftiny-lur", "nope"):
        assert httpx.get(f"{base}/v1/reports/{name}").status_code in (404, 422)
        assert httpx.get(f"{base}/v1/reports/{name}/lur.svg").status_code in (404, 422)


def test_reports_list_json_plots_and_page(service) -> None:
    base, _ = service
    reports = {r["name"]: r for r in httpx.get(f"{base}/v1/reports").json()["reports"]}
    assert set(reports) == {"tiny-lur", "base-lur"}
    tiny = json.loads(httpx.get(f"{base}/v1/reports/tiny-lur").content)  # as `speechfm lur` wrote it
    assert reports["tiny-lur"]["model"] == tiny["model"] == "tiny"
    assert reports["tiny-lur"]["layers"] == tiny["layers"] == [1, 2]
    assert reports["tiny-lur"]["lur_percent"] == tiny["lur"]
    assert reports["base-lur"]["layers"] == [1, 2, 3]
    data = httpx.get(f"{base}/v1/reports/base-lur").json()
    assert data["lur"] == [70.0, 72.5, 60.1] and data["settings"] == {"steps": 50}
    svg = httpx.get(f"{base}{reports['base-lur']['links']['svg']}")
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content
    png = httpx.get(f"{base}{reports['base-lur']['links']['png']}")
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    page = httpx.get(f"{base}{reports['base-lur']['links']['html']}")
    assert '<meta charset="utf-8">' in page.text and "<td>72.5</td>" in page.text
    assert "/v1/reports/base-lur/lur.svg" in page.text


def test_attribution_needs_the_token_and_runs_as_a_job(service, clips) -> None:
    base, _ = service
    path = "/v1/models/tiny/attributions"
    assert post(base, path, clips["tone.mp3"]).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert post(base, path, clips["tone.mp3"], headers=wrong).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = post(base, path, clips["tone.mp3"], headers=auth, data={"steps": "8"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert httpx.get(f"{base}/v1/jobs/{job['id']}").status_code == 401
    deadline = time.monotonic() + 120
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
        job = httpx.get(f"{base}/v1/jobs/{job['id']}", headers=auth).json()
    assert job["status"] == "done", job
    result = job["result"]
    assert [layer["layer"] for layer in result["layers"]] == [1, 2]  # every layer, the last too
    assert result["characters"]
    for layer in result["layers"]:
        assert 0 < layer["lur_percent"] <= 100
        assert set(layer["relevant_per_character"]) == set(result["characters"])
        assert layer["completeness_error"] < 0.05  # IG sums to the logit difference
    assert httpx.delete(f"{base}/v1/jobs/{job['id']}").status_code == 401
    assert httpx.delete(f"{base}/v1/jobs/{job['id']}", headers=auth).status_code == 204
    assert httpx.get(f"{base}/v1/jobs/{job['id']}", headers=auth).status_code == 404
    r = post(base, path, clips["long.flac"], headers=auth)
    assert r.status_code == 413 and r.json()["limit"] == "max_attribution_seconds"
    assert post(base, path, clips["junk.bin"], headers=auth).status_code == 422
    r = post(base, path, clips["tone.mp3"], headers=auth, data={"steps": "100000"})
    assert r.status_code == 422


@pytest.mark.slow
def test_schemathesis_fuzz_finds_no_server_error(service, tmp_path) -> None:
    base, _ = service
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [str(st), "run", f"{base}/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "12", "--seed", "1", "--workers", "2", "--phases", "examples,fuzzing",
         "-H", f"Authorization: Bearer {TOKEN}", "--request-timeout", "60", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_load_200_requests_8_concurrent(service, clips) -> None:
    import psutil

    base, proc = service
    server = psutil.Process(proc.pid)
    payload = clips["stereo44k.wav"].read_bytes()
    rss = [server.memory_info().rss]

    async def run() -> list[int]:
        limit = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            async def one(i: int) -> int:
                async with limit:
                    r = await client.post("/v1/models/tiny/transcribe",
                                          files={"file": (f"c{i}.wav", payload)})
                    rss.append(server.memory_info().rss)
                    return r.status_code
            return await asyncio.gather(*(one(i) for i in range(200)))

    started = time.perf_counter()
    codes = asyncio.run(run())
    elapsed = time.perf_counter() - started
    assert codes == [200] * 200
    batching = httpx.get(f"{base}/v1/ready").json()["batching"]["tiny"]
    assert batching["clips"] > batching["batches"]  # concurrent requests shared forward passes
    growth_mb = (max(rss) - rss[0]) / 2**20
    print(f"200 requests, 8 concurrent: {200 / elapsed:.1f} req/s, RSS growth {growth_mb:.1f} MB")
    assert growth_mb < 150


@pytest.mark.slow
def test_web_page_in_headless_chromium(service, clips, demo_hours, tmp_path) -> None:
    """The page: transcribe a file, click a word and hear that stretch of it, a report's plot,
    and the streaming mode with Chromium's fake microphone playing demo speech."""
    from tests.helpers.cdp import Chromium

    base, _ = service
    expected = post(base, "/v1/models/tiny/transcribe", clips["tone.mp3"]).json()
    speech = tmp_path / "mic.wav"  # what the fake microphone plays: 12 s of the demo's speech
    ffmpeg("-ss", "18", "-t", "12", "-i", str(demo_hours["radio"][0]), "-ac", "1", "-ar", "16000",
           str(speech))
    flags = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={speech}%noloop")
    with Chromium(f"{base}/", tmp_path / "profile", flags=flags) as page:
        page.wait_for("document.getElementById('model').options.length === 2")
        page.wait_for("document.querySelectorAll('#reports li').length === 2")
        page.set_file("#file", clips["tone.mp3"])
        page.evaluate("document.getElementById('transcribe').click()")
        page.wait_for("document.getElementById('status').textContent.startsWith('done')")
        shown = page.evaluate("document.getElementById('transcript').textContent")
        assert shown == " ".join(expected["text"].split())
        words = expected["chunks"][0]["words"]
        target = max(range(len(words)), key=lambda i: words[i]["end"] - words[i]["start"])
        page.click(f"#transcript .word:nth-of-type({target + 1})")  # a real mouse click
        page.wait_for("document.querySelector('#transcript .word.playing') !== null && "
                      "!document.getElementById('player').paused")
        at = page.evaluate("document.getElementById('player').currentTime")
        assert words[target]["start"] - 0.05 <= at <= words[target]["end"] + 0.3
        assert page.evaluate("document.querySelector('.word.playing').textContent") == \
            words[target]["word"]
        page.wait_for("document.getElementById('player').paused && "
                      "document.querySelector('#transcript .word.playing') === null")
        assert page.evaluate("document.getElementById('player').currentTime") <= \
            words[target]["end"] + 0.5  # it stopped at the word's end
        page.evaluate("document.querySelector('#reports li a').click()")
        page.wait_for("document.getElementById('plot').complete && "
                      "document.getElementById('plot').naturalWidth > 0")
        page.evaluate("document.getElementById('stream').click()")
        page.wait_for("document.getElementById('status').textContent.startsWith('streaming')")
        page.wait_for("document.querySelectorAll('#finals li').length >= 1")
        page.evaluate("document.getElementById('stream').click()")
        page.wait_for("document.getElementById('status').textContent.startsWith('stream done')")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = page.screenshot(ARTIFACTS / "serve-page.png")
    assert shot.stat().st_size > 1000


def openai_client(base: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


def test_openai_client_lists_and_transcribes(service, clips) -> None:
    """The official `openai` client against the OpenAI-compatible routes: listing, every
    response format, and errors as its exceptions."""
    import openai

    base, _ = service
    client = openai_client(base)
    assert {m.id for m in client.models.list()} == {"tiny", "tiny-registered"}
    assert client.models.retrieve("tiny-registered").owned_by == "speechfm-mlflow"
    own = post(base, "/v1/models/tiny/transcribe", clips["tone.mp3"]).json()
    create = client.audio.transcriptions.create
    with clips["tone.mp3"].open("rb") as f:
        assert create(model="tiny", file=f).text == own["text"]
    with clips["tone.mp3"].open("rb") as f:
        assert create(model="tiny", file=f, response_format="text").strip() == own["text"]
    with clips["tone.mp3"].open("rb") as f:
        verbose = create(model="tiny", file=f, response_format="verbose_json", language="fi",
                         prompt="ignored", temperature=0.0,
                         timestamp_granularities=["word", "segment"])
    assert verbose.text == own["text"] and verbose.language == "fi"
    assert verbose.duration == pytest.approx(3.0, abs=0.05)
    assert [(w.word, w.start, w.end) for w in verbose.words] == [
        (w["word"], w["start"], w["end"]) for w in own["chunks"][0]["words"]]
    assert [(g.start, g.end, g.text) for g in verbose.segments] == [
        (g["start"], g["end"], g["text"]) for g in own["segments"]]
    assert all(g.avg_logprob <= 0 and g.tokens and g.compression_ratio > 0
               for g in verbose.segments)
    with clips["tone.mp3"].open("rb") as f:  # the default granularity is segment only
        assert create(model="tiny", file=f, response_format="verbose_json").words is None
    with clips["tone.mp3"].open("rb") as f:
        srt = create(model="tiny", file=f, response_format="srt")
    with clips["tone.mp3"].open("rb") as f:
        vtt = create(model="tiny", file=f, response_format="vtt")
    first = own["segments"][0]
    assert srt.startswith(f"1\n00:00:{first['start']:06.3f}".replace(".", ","))
    assert vtt.startswith("WEBVTT\n\n00:00:") and first["text"] in vtt and first["text"] in srt
    assert srt.count(" --> ") == vtt.count(" --> ") == len(own["segments"])
    with clips["tone.mp3"].open("rb") as f, pytest.raises(openai.NotFoundError) as err:
        create(model="nope", file=f)
    assert err.value.body["code"] == "unknown_model"
    with clips["tone.mp3"].open("rb") as f, pytest.raises(openai.BadRequestError):
        create(model="tiny", file=f, response_format="diarized_json")
    with clips["tone.mp3"].open("rb") as f, pytest.raises(openai.BadRequestError) as err:
        create(model="tiny", file=f, stream=True)
    assert "WebSocket" in err.value.message
    with clips["junk.bin"].open("rb") as f, pytest.raises(openai.UnprocessableEntityError):
        create(model="tiny", file=f)
    r = post(base, "/v1/audio/transcriptions", clips["big.bin"], data={"model": "tiny"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "limit_exceeded"


def test_segments_and_words_follow_the_ground_truth(service, demo_hours) -> None:
    """verbose_json of a 60 s demo TV file (MPEG-TS with video; noise, a jingle, speech over
    music): segment times within 0.3 s of the truth's speech, words inside their segments."""
    base, _ = service
    ts, truth = demo_hours["tv"]
    with ts.open("rb") as f:
        verbose = openai_client(base).audio.transcriptions.create(
            model="tiny", file=f, response_format="verbose_json",
            timestamp_granularities=["segment", "word"])
    assert verbose.duration == pytest.approx(60.0, abs=0.1)
    assert_follows_the_speech([(g.start, g.end) for g in verbose.segments], truth)
    for g in verbose.segments:
        inner = [w for w in verbose.words if g.start <= w.start and w.end <= g.end]
        assert " ".join(w.word for w in inner) == g.text
    assert sum(len(g.text.split()) for g in verbose.segments) == len(verbose.words)


def pcm_of(path: Path) -> bytes:
    """16 kHz mono s16le samples of a file, as a streaming client sends them."""
    return subprocess.run([require("ffmpeg"), "-loglevel", "error", "-i", str(path), "-ac", "1",
                           "-ar", "16000", "-f", "s16le", "-"], capture_output=True,
                          check=True).stdout


def open_stream(base: str, model: str = "tiny", **start: object):
    import websocket

    ws = websocket.create_connection(base.replace("http", "ws") + f"/v1/models/{model}/stream",
                                     timeout=120)
    ws.send(json.dumps({"type": "start", "sample_rate": 16000, "format": "s16le", **start}))
    return ws


def test_streaming_gives_finals_per_speech_region(service, demo_hours) -> None:
    """A real WebSocket client streams a demo broadcast in 100 ms pieces: one final per speech
    region, in order, following the ground truth; partials while a region grows; the end."""
    base, _ = service
    ts, truth = demo_hours["radio"]
    pcm = pcm_of(ts)
    ws = open_stream(base, partials=True)
    assert json.loads(ws.recv())["type"] == "started"
    for i in range(0, len(pcm), 3200):
        ws.send_binary(pcm[i:i + 3200])
    ws.send(json.dumps({"type": "stop"}))
    messages = []
    while not messages or messages[-1]["type"] not in ("done", "error"):
        messages.append(json.loads(ws.recv()))
    ws.close()
    assert messages[-1] == {"type": "done", "seconds": pytest.approx(len(pcm) / 32000, abs=0.01)}
    finals = [m for m in messages if m["type"] == "final"]
    assert [m["start"] for m in finals] == sorted(m["start"] for m in finals)
    assert_follows_the_speech([(m["start"], m["end"]) for m in finals], truth)
    assert all(m["end"] - m["start"] <= 30.0 and m["text"] for m in finals)
    for m in finals:
        assert " ".join(w["word"] for w in m["words"]) == " ".join(m["text"].split())
        assert all(m["start"] <= w["start"] < w["end"] <= m["end"] + 0.02 for w in m["words"])
    partials = [m for m in messages if m["type"] == "partial"]
    assert partials and all(any(f["start"] == p["start"] for f in finals) for p in partials)


def test_streaming_survives_bad_and_vanishing_clients(service, demo_hours) -> None:
    import socket as sockets

    import websocket

    base, _ = service
    ws = websocket.create_connection(base.replace("http", "ws") + "/v1/models/tiny/stream")
    ws.send("not json")
    assert json.loads(ws.recv())["error"] == "bad_start"
    ws.close()
    ws = open_stream(base, sample_rate=44100)
    assert json.loads(ws.recv())["error"] == "bad_format"
    ws.close()
    ws = open_stream(base, model="nope")
    assert json.loads(ws.recv())["error"] == "unknown_model"
    ws.close()
    # a client that goes away mid-stream (no close frame) while regions are being transcribed
    pcm = pcm_of(demo_hours["radio"][0])
    for _ in range(2):
        ws = open_stream(base)
        ws.recv()
        for i in range(0, len(pcm) // 2, 3200):
            ws.send_binary(pcm[i:i + 3200])
        ws.sock.shutdown(sockets.SHUT_RDWR)
        ws.sock.close()
    time.sleep(1.0)
    assert httpx.get(f"{base}/v1/health").json() == {"status": "ok"}
    ws = open_stream(base)  # and the next stream is served as ever
    ws.recv()
    ws.send_binary(pcm[: 16000 * 10])
    ws.send(json.dumps({"type": "stop"}))
    while (message := json.loads(ws.recv()))["type"] != "done":
        assert message["type"] == "final"
    ws.close()


@pytest.mark.slow
def test_attribution_runs_beside_transcription_not_before_it(service, demo_hours,
                                                            tmp_path) -> None:
    """While an attribution job runs (its own process), transcription p90 latency stays within
    1.5x of idle; a second job while the queue is full gets 503 with a JSON error."""
    base, _ = service
    auth = {"Authorization": f"Bearer {TOKEN}"}
    speech = tmp_path / "speech.wav"  # 8 s of the demo's speech: a job of some seconds
    ffmpeg("-ss", "30", "-t", "8", "-i", str(demo_hours["radio"][0]), "-ac", "1", "-ar", "16000",
           str(speech))
    clip = tmp_path / "clip.wav"
    ffmpeg("-ss", "0", "-t", "4", "-i", str(demo_hours["radio"][0]), "-ac", "1", "-ar", "16000",
           str(clip))
    payload = clip.read_bytes()

    def status(client: httpx.Client, job: str) -> str:
        return client.get(f"/v1/jobs/{job}", headers=auth).json()["status"]

    def start_job(client: httpx.Client) -> str:
        with speech.open("rb") as f:
            r = client.post("/v1/models/tiny/attributions", headers=auth, data={"steps": "24"},
                            files={"file": ("speech.wav", f)})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while status(client, job := r.json()["id"]) != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        return job

    def timed(client: httpx.Client) -> float:
        t0 = time.perf_counter()
        r = client.post("/v1/models/tiny/transcribe", files={"file": ("c.wav", payload)})
        assert r.status_code == 200
        return time.perf_counter() - t0

    idle, during, jobs = [], [], []
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(3):
            timed(client)  # warm
        idle = [timed(client) for _ in range(15)]
        jobs.append(start_job(client))
        with speech.open("rb") as f:  # the queue (1 here) is full: a clear 503
            busy = client.post("/v1/models/tiny/attributions", headers=auth,
                               files={"file": ("speech.wav", f)})
        assert busy.status_code == 503 and busy.json()["error"] == "busy", busy.text
        time.sleep(1.0)  # the worker has its model copy and is computing
        while len(during) < 15:  # only requests that ran wholly while a job was running count
            if status(client, jobs[-1]) != "running":
                jobs.append(start_job(client))
            latency = timed(client)
            if status(client, jobs[-1]) == "running":
                during.append(latency)
        deadline = time.monotonic() + 600
        while status(client, jobs[-1]) == "running":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        finished = [client.get(f"/v1/jobs/{j}", headers=auth).json() for j in jobs]
        idle += [timed(client) for _ in range(15)]  # idle before and after: drift hits both
    assert all(j["status"] == "done" and len(j["result"]["layers"]) == 2 for j in finished)
    p90_idle, p90_during = np.percentile(idle, 90), np.percentile(during, 90)
    print(f"transcription p90: idle {p90_idle * 1000:.0f} ms, during attribution "
          f"{p90_during * 1000:.0f} ms ({p90_during / p90_idle:.2f}x, {len(jobs)} job(s))")
    assert p90_during <= 1.5 * p90_idle


@pytest.fixture(scope="module")
def onnx_service(stores: dict, tmp_path_factory: pytest.TempPathFactory):
    """A second service: the MLflow-registered model (ONNX graphs exported by `speechfm
    register`) through ONNX Runtime int8, decoded with an n-gram LM from `speechfm lm`."""
    tmp = tmp_path_factory.mktemp("serve-onnx")
    corpus = tmp / "corpus.txt"
    corpus.write_text("talo on iso\nkissa on talossa\npunainen talo\niso kissa\n")
    done = run_speechfm("lm", "--text", corpus, "--out", tmp / "lm.arpa")
    assert done.returncode == 0, done.stderr
    with serving(tmp, "--tracking-uri", stores["uri"], "--models", stores["models"],
                 "--runtime", "onnx", "--dtype", "int8", "--lm", tmp / "lm.arpa",
                 "--preload", "tiny-registered", log_name="onnx") as (base, _):
        yield base, tmp


def test_registered_model_served_by_onnx_runtime_with_the_lm(onnx_service, clips) -> None:
    """`serve --runtime onnx --dtype int8 --lm` on the pipeline's registered model: the answer is
    the LM beam search over the int8 graph's logits, computed here from the registered folder."""
    from transformers import Wav2Vec2Processor

    from speechfm.core.ctc import BeamDecoder
    from speechfm.core.onnx import OnnxCtc
    from speechfm_api import audio as audio_io

    base, tmp = onnx_service
    body = post(base, "/v1/models/tiny-registered/transcribe", clips["stereo44k.wav"]).json()
    (folder,) = {p.parent for p in (tmp / "cache").rglob("model.int8.onnx")}
    processor = Wav2Vec2Processor.from_pretrained(str(folder))
    audio = audio_io.decode(clips["stereo44k.wav"], 100.0)
    (logits,) = OnnxCtc(folder, "int8").logits(processor.feature_extractor, [audio])
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
        -1, keepdims=True)) - logits.max(-1, keepdims=True)
    beam = BeamDecoder(processor, tmp / "lm.arpa")
    assert body["text"] and body["text"] == beam(log_probs)
    assert [w["word"] for w in body["chunks"][0]["words"]] == [w.text for w in beam.words(
        log_probs)]
    # a folder model without ONNX graphs is refused, saying how to make them
    r = post(base, "/v1/models/tiny/transcribe", clips["tone.mp3"])
    assert r.status_code == 409 and "speechfm export --onnx" in r.json()["message"]
