"""The HTTP service against a real uvicorn process on 127.0.0.1: every endpoint, bad inputs, auth,
an MLflow-registered model, a schemathesis fuzz run, a bounded load test and the web page in
headless Chromium."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, require, run_speechfm

TOKEN = "test-token-0123456789"
MAX_UPLOAD_BYTES = 3 * 1024 * 1024
MAX_SECONDS = 100.0
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
def service(tiny_ctc_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`speechfm serve` in a subprocess with a models folder, an MLflow store, reports and a token;
    yields (base URL, process); stopped by PID at the end."""
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
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "SPEECHFM_SERVE_CACHE_DIR": str(tmp / "cache"), "SPEECHFM_SERVE_MAX_JOBS": "4"}
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - open for the server's whole life
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechfm", "serve", "--port", str(port), "--models", str(models),
         "--tracking-uri", uri, "--reports", str(reports), "--token-file", str(token_file),
         "--preload", "tiny", "--max-upload-mb", str(MAX_UPLOAD_BYTES / 1024 / 1024),
         "--max-seconds", str(MAX_SECONDS)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp / "server.log").read_text()
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
    assert "Traceback" not in (tmp / "server.log").read_text(), (tmp / "server.log").read_text()


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
    models = {m["name"]: m for m in httpx.get(f"{base}/v1/models").json()["models"]}
    assert set(models) == {"tiny", "tiny-registered"}
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


def test_registered_mlflow_model_transcribes_like_the_folder(service, clips) -> None:
    base, _ = service
    a = post(base, "/v1/models/tiny/transcribe", clips["tone.mp3"]).json()
    b = post(base, "/v1/models/tiny-registered/transcribe", clips["tone.mp3"]).json()
    assert b["model"] == "tiny-registered" and b["text"] == a["text"]


def test_long_audio_is_split_into_vad_chunks(service, clips) -> None:
    base, _ = service
    body = post(base, "/v1/models/tiny/transcribe", clips["long.flac"]).json()
    assert body["seconds"] == pytest.approx(75.0, abs=0.1)
    chunks = body["chunks"]
    assert len(chunks) >= 3
    assert all(0 < c["end"] - c["start"] <= 30.0 for c in chunks)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(chunks))
    # the silences after each burst (20-25 s, 45-50 s, 70-75 s) are not inside any chunk
    for gap in (22.5, 47.5, 72.5):
        assert not any(c["start"] < gap < c["end"] for c in chunks), chunks
    assert body["text"] == " ".join(c["text"] for c in chunks if c["text"])


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
def test_web_page_in_headless_chromium(service, clips, tmp_path) -> None:
    from tests.cdp import Chromium

    base, _ = service
    expected = post(base, "/v1/models/tiny/transcribe", clips["tone.mp3"]).json()["text"]
    with Chromium(f"{base}/", tmp_path / "profile") as page:
        page.wait_for("document.getElementById('model').options.length === 2")
        page.wait_for("document.querySelectorAll('#reports li').length === 2")
        page.set_file("#file", clips["tone.mp3"])
        page.evaluate("document.getElementById('transcribe').click()")
        page.wait_for("document.getElementById('status').textContent.startsWith('done')")
        assert page.evaluate("document.getElementById('transcript').textContent") == expected
        page.evaluate("document.querySelector('#reports li a').click()")
        page.wait_for("document.getElementById('plot').complete && "
                      "document.getElementById('plot').naturalWidth > 0")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = page.screenshot(ARTIFACTS / "serve-page.png")
    assert shot.stat().st_size > 1000


def test_int8_model_transcribes_close_to_float(tiny_ctc_model_dir) -> None:
    """`--dtype int8` (dynamic quantization) keeps nearly every frame's prediction."""
    import torch

    from api.registry import LoadedModel

    rng = np.random.default_rng(1)
    clips = [0.3 * rng.standard_normal(n).astype(np.float32) for n in (16000, 24000)]
    plain = LoadedModel("tiny", tiny_ctc_model_dir, "float32")
    quantized = LoadedModel("tiny", tiny_ctc_model_dir, "int8")
    assert quantized.quantized and not plain.quantized
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
               for m in quantized.model.modules())
    texts = quantized.transcribe(clips)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    with torch.inference_mode():
        x = plain.processor.feature_extractor(clips[0], sampling_rate=16000,
                                              return_tensors="pt").input_values
        agree = (plain.model(x).logits.argmax(-1) == quantized.model(x).logits.argmax(-1))
    assert agree.float().mean() > 0.9


def test_uploads_in_the_models_format_are_read_without_ffmpeg_and_give_its_samples(tmp_path):
    import soundfile as sf

    from api import audio as audio_io
    from api.errors import ApiError, LimitExceeded

    rng = np.random.default_rng(3)
    pcm = (rng.standard_normal(16000 * 2) * 3000).astype(np.int16)
    for name in ("a.wav", "a.flac"):
        sf.write(tmp_path / name, pcm, 16000, subtype="PCM_16")
        native = audio_io.read_native(tmp_path / name, 30.0)
        assert native is not None and np.array_equal(native, pcm)
        assert np.array_equal(audio_io.decode_with_ffmpeg(tmp_path / name, 30.0), pcm)
        assert np.array_equal(audio_io.decode(tmp_path / name, 30.0), pcm / np.float32(32768.0))
        with pytest.raises(LimitExceeded):  # the limit holds on this path too
            audio_io.decode(tmp_path / name, 1.5)
    # anything else is left to ffmpeg: another rate, stereo, float samples, a broken file
    sf.write(tmp_path / "rate.wav", pcm, 44100, subtype="PCM_16")
    sf.write(tmp_path / "stereo.wav", np.stack([pcm, pcm], 1), 16000, subtype="PCM_16")
    sf.write(tmp_path / "float.wav", pcm / 32768.0, 16000, subtype="FLOAT")
    (tmp_path / "cut.flac").write_bytes((tmp_path / "a.flac").read_bytes()[:60])
    for name in ("rate.wav", "stereo.wav", "float.wav", "cut.flac"):
        assert audio_io.read_native(tmp_path / name, 30.0) is None, name
    assert abs(audio_io.decode(tmp_path / "rate.wav", 30.0).size - pcm.size * 16000 / 44100) < 50
    with pytest.raises(ApiError) as err:
        audio_io.decode(tmp_path / "cut.flac", 30.0)
    assert err.value.status == 422
