"use strict";
const API = "/v1";
const $ = (id) => document.getElementById(id);
let lastClip = null;  // the last uploaded or recorded audio, reused for attribution

function say(el, text, error = false) {
  el.textContent = text;
  el.className = error ? "error" : "";
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return body.message || JSON.stringify(body.detail || body);
  } catch (e) {
    return resp.status + " " + resp.statusText;
  }
}

async function loadModels() {
  const resp = await fetch(API + "/models");
  const {models} = await resp.json();
  $("model").replaceChildren(...models.map((m) => new Option(m.name + " (" + m.source + ")", m.name)));
}

// Words of the transcript are spans holding their times; clicking one plays that stretch.
let wordTimer = null;
function playWord(span) {
  const player = $("player");
  clearTimeout(wordTimer);
  document.querySelectorAll(".word.playing").forEach((w) => w.classList.remove("playing"));
  const start = Number(span.dataset.start), end = Number(span.dataset.end);
  player.currentTime = start;
  span.classList.add("playing");
  player.play().then(() => {
    wordTimer = setTimeout(() => { player.pause(); span.classList.remove("playing"); },
                           Math.max(0.05, end - start) * 1000);
  }).catch((e) => { span.classList.remove("playing"); say($("status"), "cannot play: " + e.message, true); });
}

function showWords(chunks) {
  const spans = [];
  for (const chunk of chunks) {
    for (const w of chunk.words) {
      if (spans.length) spans.push(" ");
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = w.word;
      span.dataset.start = w.start;
      span.dataset.end = w.end;
      span.title = `${w.start.toFixed(2)}-${w.end.toFixed(2)} s`;
      span.addEventListener("click", () => playWord(span));
      spans.push(span);
    }
  }
  $("transcript").replaceChildren(...spans);
}

async function transcribe(blob, filename) {
  lastClip = {blob, filename};
  if ($("player").src) URL.revokeObjectURL($("player").src);
  $("player").src = URL.createObjectURL(blob);
  const form = new FormData();
  form.append("file", blob, filename);
  say($("status"), "transcribing...");
  const model = encodeURIComponent($("model").value);
  const resp = await fetch(`${API}/models/${model}/transcribe`, {method: "POST", body: form});
  if (!resp.ok) {
    say($("status"), await errorText(resp), true);
    return;
  }
  const result = await resp.json();
  showWords(result.chunks);
  $("chunks").tBodies[0].replaceChildren(...result.chunks.map((c) => {
    const row = document.createElement("tr");
    for (const v of [c.start.toFixed(2), c.end.toFixed(2), c.text]) {
      row.insertCell().textContent = v;
    }
    return row;
  }));
  say($("status"), `done: ${result.seconds.toFixed(1)} s of audio, ${result.chunks.length} chunk(s)`);
}

$("transcribe").addEventListener("click", () => {
  const file = $("file").files[0];
  if (!file) { say($("status"), "choose a file first", true); return; }
  transcribe(file, file.name);
});

let recorder = null;
$("record").addEventListener("click", async () => {
  if (recorder) { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    const parts = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => parts.push(e.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      $("record").textContent = "Record";
      transcribe(new Blob(parts, {type: parts[0] ? parts[0].type : "audio/webm"}), "recording.webm");
    };
    recorder.start();
    $("record").textContent = "Stop";
    say($("status"), "recording...");
  } catch (e) {
    say($("status"), "cannot record: " + e.message, true);
  }
});

// Streaming mode: microphone -> 16 kHz s16le over the WebSocket; finals and partials shown live.
let live = null;
function toPcm16k(samples, rate) {
  const n = Math.floor(samples.length * 16000 / rate);
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    const x = samples[Math.min(samples.length - 1, Math.round(i * rate / 16000))];
    out[i] = Math.max(-1, Math.min(1, x)) * 32767;
  }
  return out;
}

$("stream").addEventListener("click", async () => {
  if (live) { live.stop(); return; }
  if (!navigator.mediaDevices || !window.WebSocket || !window.AudioContext) {
    say($("status"), "streaming needs microphone access and WebSockets (not given here)", true);
    return;
  }
  try {
    const media = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1}});
    const ctx = new AudioContext();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const model = encodeURIComponent($("model").value);
    const ws = new WebSocket(`${scheme}://${location.host}${API}/models/${model}/stream`);
    ws.binaryType = "arraybuffer";
    let started = false;
    const source = ctx.createMediaStreamSource(media);
    const tap = ctx.createScriptProcessor(4096, 1, 1);
    tap.onaudioprocess = (e) => {
      if (started && ws.readyState === WebSocket.OPEN) {
        ws.send(toPcm16k(e.inputBuffer.getChannelData(0), ctx.sampleRate).buffer);
      }
    };
    source.connect(tap);
    tap.connect(ctx.destination);
    const release = () => {
      tap.disconnect(); source.disconnect();
      media.getTracks().forEach((t) => t.stop());
      ctx.close();
      live = null;
      $("stream").textContent = "Stream from microphone";
    };
    ws.onopen = () => ws.send(JSON.stringify({type: "start", sample_rate: 16000, format: "s16le", partials: true}));
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === "started") { started = true; say($("status"), "streaming... speak"); }
      else if (m.type === "partial") { $("partial").textContent = m.text; }
      else if (m.type === "final") {
        const item = document.createElement("li");
        item.textContent = `${m.start.toFixed(1)}-${m.end.toFixed(1)} s: ${m.text}`;
        $("finals").append(item);
        $("partial").textContent = "";
      } else if (m.type === "done") { say($("status"), `stream done: ${m.seconds.toFixed(1)} s`); }
      else if (m.type === "error") { say($("status"), m.message, true); }
    };
    ws.onclose = () => { if (live) release(); };
    $("live-section").hidden = false;
    $("stream").textContent = "Stop streaming";
    live = {stop() {
      started = false;
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "stop"}));
      release();
    }};
  } catch (e) {
    say($("status"), "cannot stream: " + e.message, true);
  }
});

$("attribute").addEventListener("click", async () => {
  if (!lastClip) { say($("job"), "transcribe a clip first", true); return; }
  const form = new FormData();
  form.append("file", lastClip.blob, lastClip.filename);
  form.append("steps", $("steps").value);
  const headers = {Authorization: "Bearer " + $("token").value};
  const model = encodeURIComponent($("model").value);
  const resp = await fetch(`${API}/models/${model}/attributions`, {method: "POST", body: form, headers});
  if (!resp.ok) { say($("job"), await errorText(resp), true); return; }
  let job = await resp.json();
  while (job.status === "queued" || job.status === "running") {
    say($("job"), `job ${job.id.slice(0, 8)}: ${job.status} ${job.progress.done}/${job.progress.total}`);
    await new Promise((r) => setTimeout(r, 500));
    job = await (await fetch(`${API}/jobs/${job.id}`, {headers})).json();
  }
  if (job.status !== "done") { say($("job"), "failed: " + job.error, true); return; }
  say($("job"), "done");
  $("layers").tBodies[0].replaceChildren(...job.result.layers.map((l) => {
    const row = document.createElement("tr");
    for (const v of [l.layer, l.lur_percent.toFixed(1), l.mean_abs_attribution.toExponential(2)]) {
      row.insertCell().textContent = v;
    }
    return row;
  }));
});

async function loadReports() {
  const {reports} = await (await fetch(API + "/reports")).json();
  $("reports").replaceChildren(...reports.map((r) => {
    const item = document.createElement("li");
    const show = document.createElement("a");
    show.href = "#";
    show.textContent = `${r.name} (${r.model})`;
    show.addEventListener("click", (e) => {
      e.preventDefault();
      $("plot").src = r.links.svg;
      $("plot").alt = "LUR per layer, " + r.name;
      $("plot").hidden = false;
    });
    item.append(show, " ");
    for (const kind of ["html", "json", "png"]) {
      const link = document.createElement("a");
      link.href = r.links[kind];
      link.textContent = kind;
      item.append(" [", link, "]");
    }
    return item;
  }));
}

loadModels().then(loadReports).catch((e) => say($("status"), e.message, true));
