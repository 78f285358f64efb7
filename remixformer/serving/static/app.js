// The page of `remixformer serve`: builds the form from GET /model, posts it to /predict and shows
// the ranked diagnoses as bars and the attention overlays. Plain JavaScript, no build step; every
// value from the server is inserted as text, never as HTML.
"use strict";

const LABELS = { clinical: "Clinical photo", dermoscopy: "Dermoscopy image" };
const state = { model: null };

function $(id) {
  return document.getElementById(id);
}

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "className") node.className = v;
    else node.setAttribute(k, v);
  }
  if (text !== null) node.textContent = text;
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function formatBytes(n) {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(n % 2 ** 20 ? 1 : 0)} MiB` : `${Math.round(n / 1024)} KiB`;
}

function percent(p) {
  return `${(100 * p).toFixed(1)} %`;
}

// --- building the form from the model description --------------------------------------------------
function buildImageInputs(model) {
  const box = $("image-inputs");
  box.replaceChildren();
  for (const name of model.image_fields) {
    const wrap = el("div", { className: "image-input" });
    const id = `file-${name}`;
    wrap.append(el("label", { for: id }, LABELS[name] || name));
    const input = el("input", { type: "file", id, name, accept: "image/*" });
    const preview = el("img", { className: "preview", alt: `${LABELS[name] || name} preview`, hidden: "" });
    input.addEventListener("change", () => {
      if (preview.src) URL.revokeObjectURL(preview.src);
      const file = input.files[0];
      if (file) {
        preview.src = URL.createObjectURL(file);
        preview.hidden = false;
      } else {
        preview.removeAttribute("src");
        preview.hidden = true;
      }
    });
    wrap.append(input, preview);
    box.append(wrap);
  }
  const limit = formatBytes(model.limits.max_upload_bytes);
  $("images-hint").textContent = model.image_fields.length
    ? `Any of them may be left out. Files up to ${limit} each.`
    : "This model takes no images.";
  $("images").hidden = model.image_fields.length === 0;
}

function buildMetadataInputs(model) {
  const box = $("meta-fields");
  box.replaceChildren();
  for (const field of model.metadata_fields) {
    const label = el("label", { for: `meta-${field.name}` });
    label.append(document.createTextNode(field.name.replaceAll("_", " ")));
    let input;
    if (field.kind === "numeric") {
      input = el("input", { type: "number", step: "any", id: `meta-${field.name}`, name: field.name });
      input.placeholder = field.description ? `a number (${field.description})` : "a number";
      const how = field.encoding === "linear" ? "interpolated between" : "binned as";
      input.title = `${how} ${field.values.join(", ")}`;
    } else {
      input = el("select", { id: `meta-${field.name}`, name: field.name });
      input.append(el("option", { value: "" }, "(unknown)"));
      for (const v of field.values) input.append(el("option", { value: v }, v));
    }
    if (field.description && field.kind !== "numeric") label.title = field.description;
    label.append(input);
    box.append(label);
  }
  $("metadata").hidden = model.metadata_fields.length === 0;
}

function describeModel(model) {
  const ck = model.checkpoint || {};
  const mods = Object.values(model.modalities).join(", ");
  const sha = ck.sha256 ? ck.sha256.slice(0, 12) : "?";
  $("model-info").textContent =
    `Model: ${ck.file || "?"} (${ck.preset || "?"}, sha256 ${sha}…) · inputs: ${mods} · ` +
    `classes: ${model.diagnosis_classes.join(", ")}`;
}

async function loadModel() {
  try {
    const response = await fetch("/model");
    if (!response.ok) throw new Error(`GET /model answered ${response.status}`);
    const model = await response.json();
    state.model = model;
    describeModel(model);
    buildImageInputs(model);
    buildMetadataInputs(model);
    if (model.backend && model.backend !== "eager") {
      // the onnxruntime backend gives no attention maps (POST /predict would answer 422)
      $("explain").checked = false;
      $("explain").closest("label").hidden = true;
    }
    $("case-form").hidden = false;
    document.body.dataset.ready = "true";
  } catch (err) {
    $("model-info").textContent = "";
    showError(`Could not load the model description: ${err.message}`);
  }
}

// --- submitting ---------------------------------------------------------------------------------------
function collectForm() {
  const model = state.model;
  const data = new FormData();
  let inputs = 0;
  for (const name of model.image_fields) {
    const file = $(`file-${name}`).files[0];
    if (!file) continue;
    if (file.size > model.limits.max_upload_bytes) {
      throw new Error(
        `${LABELS[name] || name}: the file is ${formatBytes(file.size)}, over the limit of ` +
          `${formatBytes(model.limits.max_upload_bytes)}.`
      );
    }
    data.append(name, file, file.name);
    inputs += 1;
  }
  for (const field of model.metadata_fields) {
    const value = $(`meta-${field.name}`).value.trim();
    if (value !== "") {
      data.append(field.name, value);
      inputs += 1;
    }
  }
  if (inputs === 0) {
    const what = Object.values(model.modalities).join(", ");
    throw new Error(`Nothing to classify: give at least one of ${what}.`);
  }
  data.append("explain", $("explain").checked ? "true" : "false");
  data.append("top_k", String(Math.min(3, model.diagnosis_classes.length)));
  return data;
}

async function submit(event) {
  event.preventDefault();
  clearError();
  let data;
  try {
    data = collectForm();
  } catch (err) {
    showError(err.message);
    return;
  }
  const button = $("submit");
  button.disabled = true;
  $("status").textContent = "Running the model…";
  try {
    const response = await fetch("/predict", { method: "POST", body: data });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : response.statusText;
      const retry = response.headers.get("Retry-After");
      const extra = response.status === 503 && retry ? ` Try again in ${retry} s.` : "";
      showError(`Error ${response.status}: ${detail}${extra}`);
      $("result").hidden = true;
      return;
    }
    renderResult(body);
  } catch (err) {
    showError(`The request failed: ${err.message}`);
  } finally {
    button.disabled = false;
    $("status").textContent = "";
  }
}

// --- showing the result -------------------------------------------------------------------------------
function renderBars(result) {
  const model = state.model;
  const diagTask = model.tasks[0].name;
  const probs = result.probabilities[diagTask];
  const topNames = new Set(result.top_k.map((t) => t.class));
  const ranked = Object.entries(probs).sort((a, b) => b[1] - a[1]);
  const list = $("bars");
  list.replaceChildren();
  for (const [name, p] of ranked) {
    const row = el("li", { className: topNames.has(name) ? "bar-row top" : "bar-row" });
    row.dataset.class = name;
    const track = el("div", { className: "bar-track", role: "img", "aria-label": `${name} ${percent(p)}` });
    const fill = el("div", { className: "bar-fill" });
    fill.style.width = `${Math.max(0, Math.min(100, 100 * p)).toFixed(1)}%`;
    track.append(fill);
    row.append(el("span", { className: "bar-label" }, name), track, el("span", { className: "bar-value" }, percent(p)));
    list.append(row);
  }
}

function renderTasks(result) {
  const box = $("tasks");
  box.replaceChildren();
  for (const task of state.model.tasks.slice(1)) {
    const probs = result.probabilities[task.name];
    if (!probs) continue;
    const kind = task.kind === "multi" ? "probability each attribute is present" : "probabilities";
    box.append(el("h3", {}, `${task.name} (${kind})`));
    const table = el("table", { className: "task" });
    for (const [name, p] of Object.entries(probs)) {
      const tr = el("tr");
      tr.append(el("th", {}, name), el("td", { className: "num" }, percent(p)));
      table.append(tr);
    }
    box.append(table);
  }
}

function renderOverlays(result) {
  const box = $("overlays");
  box.replaceChildren();
  const overlays = result.overlays || [];
  for (const o of overlays) {
    if (!o.image.startsWith("data:image/png;base64,")) continue;
    const fig = el("figure", { className: "overlay" });
    fig.dataset.name = o.name;
    fig.append(el("img", { src: o.image, alt: o.title }), el("figcaption", {}, o.title));
    box.append(fig);
  }
  $("overlays-section").hidden = overlays.length === 0;
}

function renderResult(result) {
  renderBars(result);
  renderTasks(result);
  renderOverlays(result);
  const names = { C: "photo", D: "dermoscopy", M: "metadata" };
  const used = [...result.modalities_used].map((m) => names[m] || m).join(", ");
  $("result-meta").textContent =
    `Most likely: ${result.diagnosis}. Inputs used: ${used}. ` +
    `Computed in ${result.seconds.toFixed(2)} s. ${result.disclaimer}`;
  $("result").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("case-form").addEventListener("submit", submit);
  $("case-form").addEventListener("reset", () => {
    clearError();
    $("result").hidden = true;
    for (const img of document.querySelectorAll(".preview")) {
      img.removeAttribute("src");
      img.hidden = true;
    }
  });
  loadModel();
});
