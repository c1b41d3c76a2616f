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

async function transcribe(blob, filename) {
  lastClip = {blob, filename};
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
  $("transcript").textContent = result.text;
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
