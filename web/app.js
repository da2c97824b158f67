// imagegen web page: type a prompt, see four images, pick one.
//
// Plain ES module, no framework, no build step. It talks to the imagegen API:
//   GET /models          -> the models this deployment offers
//   POST /jobs           -> 202 {job_id, status, status_url}, or 400 {error, message, details[]}
//   GET /jobs/{id}       -> {job_id, status, progress?, manifest? | error?}
//   GET /jobs/{id}/events -> Server-Sent Events: one `image` event per image as it is stored, then the
//                            end; read with fetch (an EventSource cannot send x-api-key), resumed with
//                            Last-Event-ID after each batch (the deployed API answers one batch a request)
// Configuration comes from config.js: window.IMAGEGEN_CONFIG = {apiUrl, apiKey, apiKeyRequired}.

// Stability models take an aspect ratio, not a size (image_pipeline/models/stability.py). Used when
const POLL_FIRST_MS = 400;
const POLL_MAX_MS = 1500;
const POLL_GIVE_UP_MS = 15 * 60 * 1000;
const POLL_RETRIES = 4;
const KEY_STORAGE = "imagegen.apiKey";

/** Fields of the form that an API error can point at (the request's field names). */
const FORM_FIELDS = ["prompt", "negative_prompt", "model", "aspect_ratio", "width", "height", "count", "seed"];

/** A manifest reason code, in words. */
const REASONS = {
  CONTENT_FILTERED_INPUT: ["Blocked by the content filter", "The model refused the prompt. Rephrase it and try again."],
  CONTENT_FILTERED_OUTPUT: ["Blocked by the content filter", "The model made this image but the content filter withheld it."],
  THROTTLED: ["Model busy", "Bedrock throttled the request, even after retries. Try again in a minute."],
  MODEL_TIMEOUT: ["Timed out", "The model did not answer in time."],
  MODEL_UNAVAILABLE: ["Model unavailable", "The model service failed for this image."],
  MODEL_REJECTED_REQUEST: ["Request refused", "The model refused the request's parameters."],
  MODEL_ACCESS_DENIED: ["No model access", "This account has no access to the model."],
  MODEL_RESPONSE_INVALID: ["Bad model answer", "The model's answer was not a usable image."],
  STORAGE_ERROR: ["Not stored", "The image could not be saved to storage."],
  STORAGE_MISSING: ["Not stored", "The image was reported saved but is not in storage."],
  TASK_TIMEOUT: ["Timed out", "Generating this image took too long."],
  TASK_FAILED: ["Failed", "An internal step failed for this image."],
  LAMBDA_ERROR: ["Failed", "An internal step failed for this image."],
  INTERNAL_ERROR: ["Failed", "An internal error stopped this image."],
  MISSING_RESULT: ["Failed", "No result came back for this image."],
};

/** A job-level error name, in words. */
const JOB_ERRORS = {
  InvalidRequest: "The request cannot be served.",
  AllImagesFiltered: "Every image was blocked by the content filter. Try a different prompt.",
  ImagesThrottled: "The model was too busy to generate any image. Try again in a minute.",
  ImagesFailed: "No image could be generated.",
};

// -- configuration ---------------------------------------------------------------------------

function readConfig() {
  const raw = window.IMAGEGEN_CONFIG || {};
  const apiUrl = typeof raw.apiUrl === "string" && raw.apiUrl.trim() ? raw.apiUrl.trim() : "./";
  const base = new URL(apiUrl.endsWith("/") ? apiUrl : `${apiUrl}/`, window.location.href);
  return {
    base,
    apiKey: typeof raw.apiKey === "string" && raw.apiKey ? raw.apiKey : null,
    apiKeyRequired: Boolean(raw.apiKeyRequired),
  };
}

const config = readConfig();

// -- API client ------------------------------------------------------------------------------

class ApiError extends Error {
  /**
   * @param {"network"|"http"} kind
   * @param {string} message what to tell the user
   * @param {{status?: number, body?: any}} [extra]
   */
  constructor(kind, message, { status = 0, body = null } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.body = body;
  }

  get details() {
    return Array.isArray(this.body?.details) ? this.body.details : [];
  }

  get retryable() {
    return this.kind === "network" || this.status === 429 || this.status >= 500;
  }
}

function apiKey() {
  return config.apiKey || sessionStorage.getItem(KEY_STORAGE) || "";
}

/** `path` under the API's base URL (which may carry a stage path such as /prod/). */
function apiUrl(path) {
  return new URL(path.replace(/^\/+/, ""), config.base).toString();
}

async function callApi(method, url, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const key = apiKey();
  if (key) headers["x-api-key"] = key;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError("network", `Cannot reach the API at ${config.base.origin}. Check your connection and try again.`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw new ApiError("http", httpErrorMessage(response.status, data), { status: response.status, body: data });
  return data;
}

function httpErrorMessage(status, body) {
  const said = body && typeof body.message === "string" ? body.message : "";
  if (status === 400 || status === 422) return said || "The request is not valid.";
  if (status === 401 || status === 403) return "The API refused the request: check the API key.";
  if (status === 404) return said || "Not found.";
  if (status === 429) return "Too many requests right now. Wait a moment and try again.";
  if (status >= 500) return `The server failed (HTTP ${status})${said ? `: ${said}` : ""}. Try again.`;
  return said || `Unexpected answer from the API (HTTP ${status}).`;
}

const api = {
  models: () => callApi("GET", apiUrl("models")),
  createJob: (request) => callApi("POST", apiUrl("jobs"), request),
  job: (url) => callApi("GET", url),
};

// -- small DOM helpers -----------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const dom = {
  form: $("request-form"),
  prompt: $("prompt"),
  negative: $("negative_prompt"),
  model: $("model"),
  modelHint: $("model-hint"),
  aspect: $("aspect_ratio"),
  width: $("width"),
  height: $("height"),
  count: $("count"),
  seed: $("seed"),
  advanced: $("advanced"),
  apiKeyField: $("api-key-field"),
  apiKey: $("api_key"),
  formError: $("form-error"),
  generate: $("generate"),
  promptCount: $("prompt-count"),
  promptLimit: $("prompt-limit"),
  results: $("results"),
  resultsMeta: $("results-meta"),
  status: $("status"),
  statusText: $("status-text"),
  progress: $("progress"),
  grid: $("grid"),
  actions: $("actions"),
  selectionText: $("selection-text"),
  download: $("download"),
  rerun: $("rerun"),
};

// -- state -----------------------------------------------------------------------------------

const state = {
  models: [],
  lastRequest: null,
  shape: "1 / 1", // CSS aspect-ratio of the images being generated
  selected: null, // the selected manifest image
};

// -- models and sizes ------------------------------------------------------------------------

/** The aspect ratios a model takes, or null when it takes width and height. */
function aspectRatiosOf(model) {
  if (!model) return null;
  // GET /models lists `aspect_ratios` for the models that take a ratio instead of a size.
  return Array.isArray(model.aspect_ratios) && model.aspect_ratios.length ? model.aspect_ratios : null;
}

function currentModel() {
  return state.models.find((m) => m.id === dom.model.value) || null;
}

async function loadModels() {
  let body;
  try {
    body = await api.models();
  } catch (error) {
    dom.model.replaceChildren(el("option", { value: "", text: "Server default" }));
    showFieldError("model", `Could not load the list of models: ${error.message}`);
    onModelChange();
    return;
  }
  state.models = Array.isArray(body?.models) ? body.models : [];
  const options = state.models.map((m) => {
    const enabled = m.enabled !== false;
    let label = m.name || m.id;
    if (m.lifecycle === "legacy") label += " (legacy)";
    if (m.lifecycle === "eol") label += " (end of life)";
    else if (enabled && m.available === false) label += " (not offered here)";
    if (!enabled) label += " (not enabled here)";
    return el("option", { value: m.id, disabled: !enabled, text: label });
  });
  if (!options.length) options.push(el("option", { value: "", text: "Server default" }));
  dom.model.replaceChildren(...options);
  const offered = state.models.filter((m) => m.enabled !== false);
  const preferred = offered.find((m) => m.default) || offered[0];
  if (preferred) dom.model.value = preferred.id;
  onModelChange();
}

function onModelChange() {
  clearFieldError("model");
  const model = currentModel();
  const ratios = aspectRatiosOf(model);
  $("aspect-field").hidden = !ratios;
  $("width-field").hidden = Boolean(ratios);
  $("height-field").hidden = Boolean(ratios);
  if (ratios) {
    const keep = dom.aspect.value;
    dom.aspect.replaceChildren(...ratios.map((r) => el("option", { value: r, text: r })));
    dom.aspect.value = ratios.includes(keep) ? keep : ratios.includes("1:1") ? "1:1" : ratios[0];
  }
  const notes = [];
  if (model?.provider) notes.push(model.provider);
  if (model?.lifecycle === "legacy" || model?.available === false) {
    notes.push(model.lifecycle_note || `Legacy model${model.end_of_life ? `, end of life ${model.end_of_life}` : ""}.`);
  }
  dom.modelHint.textContent = notes.join(" · ");
  updatePromptCount();
}

function updatePromptCount() {
  const length = dom.prompt.value.length;
  const limit = currentModel()?.prompt_max_chars;
  dom.promptCount.textContent = length.toLocaleString();
  dom.promptLimit.textContent = limit ? ` of at most ${limit.toLocaleString()} for this model` : "";
  dom.prompt.closest(".field").classList.toggle("over-limit", Boolean(limit && length > limit));
}

// -- field errors ----------------------------------------------------------------------------

function fieldControl(field) {
  return field === "api_key" ? dom.apiKey : $(field);
}

function showFieldError(field, message) {
  const box = $(`${field}-error`);
  const wrapper = box?.closest(".field");
  if (!box || !wrapper || wrapper.hidden) return false;
  box.textContent = message;
  box.hidden = false;
  wrapper.classList.add("has-error");
  fieldControl(field)?.setAttribute("aria-invalid", "true");
  if (wrapper.closest("details")) wrapper.closest("details").open = true;
  return true;
}

function clearFieldError(field) {
  const box = $(`${field}-error`);
  if (!box) return;
  box.hidden = true;
  box.textContent = "";
  box.closest(".field")?.classList.remove("has-error");
  fieldControl(field)?.removeAttribute("aria-invalid");
}

function clearErrors() {
  for (const field of [...FORM_FIELDS, "api_key"]) clearFieldError(field);
  dom.formError.hidden = true;
  dom.formError.replaceChildren();
}

function showFormError(message, items = []) {
  dom.formError.replaceChildren(el("p", { text: message }));
  if (items.length) dom.formError.append(el("ul", {}, ...items.map((t) => el("li", { text: t }))));
  dom.formError.hidden = false;
}

/** The form field an API detail names: "prompt", "body.prompt" and the like. */
function formFieldOf(name) {
  const last = String(name || "").split(".").pop();
  return FORM_FIELDS.includes(last) ? last : null;
}

/** Show each {field, message} next to its field; what has no field goes in the form's error box. */
function showRequestErrors(message, details) {
  const unplaced = [];
  let first = null;
  for (const detail of details) {
    const field = formFieldOf(detail.field);
    if (field && showFieldError(field, detail.message)) first ??= field;
    else unplaced.push(detail.field ? `${detail.field}: ${detail.message}` : detail.message);
  }
  if (first) {
    if (unplaced.length) showFormError("Also check:", unplaced);
    fieldControl(first).focus();
  } else {
    showFormError(message, unplaced.filter((text) => text !== message));
  }
}

// -- the request -----------------------------------------------------------------------------

function intOrNull(input) {
  const text = input.value.trim();
  if (!text) return { value: null };
  if (!/^\d+$/.test(text)) return { error: "Enter a whole number." };
  return { value: Number(text) };
}

/** The request the form describes, or field errors found before asking the API. */
function readForm() {
  const errors = [];
  const request = {};
  const prompt = dom.prompt.value.trim();
  if (!prompt) errors.push({ field: "prompt", message: "Enter a prompt: describe the image you want." });
  else request.prompt = prompt;
  const negative = dom.negative.value.trim();
  if (negative) request.negative_prompt = negative;
  if (dom.model.value) request.model = dom.model.value;
  if (!$("aspect-field").hidden) request.aspect_ratio = dom.aspect.value;
  else {
    for (const [field, input] of [["width", dom.width], ["height", dom.height]]) {
      const parsed = intOrNull(input);
      if (parsed.error) errors.push({ field, message: parsed.error });
      else if (parsed.value === null) errors.push({ field, message: `Enter the ${field} in pixels.` });
      else request[field] = parsed.value;
    }
  }
  const count = intOrNull(dom.count);
  if (count.error || count.value === 0) errors.push({ field: "count", message: "Enter how many images, 1 or more." });
  else request.count = count.value ?? 4;
  const seed = intOrNull(dom.seed);
  if (seed.error) errors.push({ field: "seed", message: "A seed is a whole number, 0 or more." });
  else if (seed.value !== null) request.seed = seed.value;
  return { request, errors };
}

function fillForm(request) {
  dom.prompt.value = request.prompt || "";
  dom.negative.value = request.negative_prompt || "";
  if (request.model && state.models.some((m) => m.id === request.model)) dom.model.value = request.model;
  onModelChange();
  if (request.aspect_ratio) dom.aspect.value = request.aspect_ratio;
  if (request.width) dom.width.value = request.width;
  if (request.height) dom.height.value = request.height;
  dom.count.value = request.count ?? 4;
  dom.seed.value = request.seed ?? "";
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  if (!$("api-key-field").hidden) {
    const key = dom.apiKey.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else if (!config.apiKey) {
      showFieldError("api_key", "Enter the API key of this deployment.");
      dom.apiKey.focus();
      return;
    }
  }
  const { request, errors } = readForm();
  if (errors.length) {
    showRequestErrors("Check the highlighted fields.", errors);
    return;
  }
  await startJob(request);
}

async function startJob(request) {
  state.lastRequest = request;
  state.shape = shapeOf(request);
  setBusy(true);
  clearSelection();
  showPending(request.count, "Sending the request…");
  let created;
  try {
    created = await api.createJob(request);
  } catch (error) {
    setBusy(false);
    resetResults();
    if (error.kind === "http" && (error.status === 400 || error.status === 422)) {
      const details = error.details.length ? error.details : [{ field: null, message: error.message }];
      showRequestErrors(error.message, details);
    } else if (error.status === 401 || error.status === 403) {
      dom.apiKeyField.hidden = false;
      showFieldError("api_key", error.message);
      dom.apiKey.focus();
    } else {
      showFailure(error.message);
    }
    return;
  }
  const jobId = created?.job_id;
  if (!jobId) {
    setBusy(false);
    showFailure("The API accepted the request but returned no job id.");
    return;
  }
  const statusUrl = /^https?:/i.test(created.status_url || "") ? created.status_url : apiUrl(`jobs/${encodeURIComponent(jobId)}`);
  // Images appear as they are stored (GET /jobs/{id}/events) while the polls below give the job's
  // status, progress and, at its end, the manifest that replaces them.
  const live = new AbortController();
  let job;
  try {
    job = await pollJob(statusUrl, () => followEvents(jobId, live.signal, showLiveImage));
  } catch (error) {
    setBusy(false);
    showFailure(error.message, `Job ${jobId}`);
    return;
  } finally {
    live.abort();
  }
  setBusy(false);
  showJob(job, request);
}

/** One event of a `text/event-stream` block: {id, name, data, retry}. */
function parseEvent(block) {
  const event = { id: null, name: null, data: null, retry: null };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") event.id = value;
    else if (field === "event") event.name = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
  }
  if (data.length) {
    try {
      event.data = JSON.parse(data.join("\n"));
    } catch {
      event.data = null;
    }
  }
  return event;
}

/**
 * Follow a job's events until its end event, calling onImage(image) for each image event; reconnects
 * after `retry:` ms with Last-Event-ID (the deployed API answers one batch per request). Quietly stops
 * on any error: the polls still bring the job to its end.
 */
async function followEvents(jobId, signal, onImage) {
  const url = apiUrl(`jobs/${encodeURIComponent(jobId)}/events`);
  let last = 0;
  let retry = 2000;
  while (!signal.aborted) {
    const headers = { accept: "text/event-stream" };
    const key = apiKey();
    if (key) headers["x-api-key"] = key;
    if (last) headers["last-event-id"] = String(last);
    try {
      const response = await fetch(url, { headers, cache: "no-store", signal });
      if (!response.ok || response.status === 204 || !response.body) return;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (event.retry !== null) retry = event.retry;
          if (event.id !== null && /^\d+$/.test(event.id)) last = Number(event.id);
          if (event.name === "image" && event.data) onImage(event.data);
          else if (event.name) return; // completed, cancelled or failed: the polls show it
        }
      }
    } catch {
      return;
    }
    await sleep(retry);
  }
}

/** Put an image that has just been stored (or filtered, or failed) in place of its placeholder. */
function showLiveImage(image) {
  const tiles = dom.grid.children;
  const index = Number(image.index);
  if (!Number.isInteger(index) || index < 0 || index >= tiles.length) return;
  if (!tiles[index].classList.contains("tile-pending")) return;
  tiles[index].replaceWith(imageTile(image, tiles.length, "image"));
  if (image.status === "SUCCEEDED" && dom.actions.hidden) {
    dom.actions.hidden = false; // a picture may be picked (and downloaded) before the others are made
    dom.selectionText.textContent = "Select an image to download it or re-run its seed.";
  }
}

/**
 * Poll a job until it succeeds or fails, showing its progress; gives up after 15 minutes.
 * onRunning() is called once, when the job is first seen queued or running.
 */
async function pollJob(url, onRunning = () => {}) {
  let running = false;
  const deadline = performance.now() + POLL_GIVE_UP_MS;
  let delay = POLL_FIRST_MS;
  let failures = 0;
  for (;;) {
    let job;
    try {
      job = await api.job(url);
      failures = 0;
    } catch (error) {
      if (!error.retryable || ++failures > POLL_RETRIES) throw error;
      showProgress(null, `Connection trouble, retrying (${failures} of ${POLL_RETRIES})…`);
      await sleep(delay * 2 ** failures);
      continue;
    }
    // A job cancelled elsewhere (DELETE /jobs/{id}) ends too, with the images it made.
    if (job.status === "succeeded" || job.status === "failed" || job.status === "cancelled") return job;
    if (!running) {
      running = true;
      onRunning();
    }
    showProgress(job.progress, job.status === "queued" ? "Queued…" : null);
    if (performance.now() > deadline) throw new Error("The job is still running after 15 minutes; stopped waiting.");
    await sleep(delay);
    delay = Math.min(POLL_MAX_MS, delay * 1.3);
  }
}

// -- rendering: progress ---------------------------------------------------------------------

/** The CSS aspect-ratio of the images a request asks for (placeholders take it while they wait). */
function shapeOf(request) {
  if (request.aspect_ratio) return request.aspect_ratio.replace(":", " / ");
  if (request.width && request.height) return `${request.width} / ${request.height}`;
  return "1 / 1";
}

function setBusy(busy) {
  dom.generate.disabled = busy;
  dom.generate.querySelector(".button-label").textContent = busy ? "Generating…" : "Generate";
  dom.form.setAttribute("aria-busy", String(busy));
  dom.rerun.disabled = busy || !state.selected;
}

function resetResults() {
  dom.grid.replaceChildren();
  dom.progress.hidden = true;
  dom.status.classList.remove("is-error", "is-running");
  dom.statusText.textContent = "Your images will appear here.";
  dom.resultsMeta.textContent = "";
  dom.actions.hidden = true;
}

function showPending(count, text) {
  dom.status.classList.remove("is-error");
  dom.status.classList.add("is-running");
  dom.statusText.textContent = text;
  dom.progress.hidden = false;
  dom.progress.removeAttribute("value"); // indeterminate until the total is known
  dom.resultsMeta.textContent = "";
  dom.actions.hidden = true;
  const n = Math.max(1, Math.min(count || 4, 40));
  dom.grid.dataset.count = String(n);
  const placeholder = (i) => {
    const frame = el("span", { class: "frame" });
    frame.style.aspectRatio = state.shape; // CSSOM, not a style attribute: allowed by the page's CSP
    const caption = el("span", { class: "caption" }, el("span", { class: "caption-index", text: `#${i + 1}` }));
    return el("div", { class: "tile tile-pending", "aria-hidden": "true" }, frame, caption);
  };
  dom.grid.replaceChildren(...Array.from({ length: n }, (_, i) => placeholder(i)));
}

function showProgress(progress, text) {
  const total = Number(progress?.total) || 0;
  const done = Number(progress?.done) || 0;
  const failed = Number(progress?.failed) || 0;
  if (total > 0) {
    dom.progress.max = total;
    dom.progress.value = done + failed;
    if (dom.grid.children.length !== total) showPending(total, "");
  }
  dom.progress.hidden = false;
  if (text) dom.statusText.textContent = text;
  else if (total > 0) {
    dom.statusText.textContent = `Generating: ${done + failed} of ${total} images finished${failed ? ` (${failed} failed)` : ""}…`;
  } else dom.statusText.textContent = "Checking the request…";
}

/** An error in the results area: what happened, and optionally the API's own words below it. */
function showFailure(message, detail = "") {
  dom.grid.replaceChildren();
  dom.progress.hidden = true;
  dom.status.classList.remove("is-running");
  dom.status.classList.add("is-error");
  dom.statusText.replaceChildren(el("strong", { text: message }));
  if (detail) dom.statusText.append(el("span", { class: "status-detail", text: detail }));
  dom.actions.hidden = true;
}

// -- rendering: results ----------------------------------------------------------------------

function reasonInWords(image) {
  const known = REASONS[image.reason_code];
  if (known) return known;
  const code = String(image.reason_code || (image.status === "FILTERED" ? "FILTERED" : "FAILED"));
  const words = code.toLowerCase().replaceAll("_", " ");
  return [words.charAt(0).toUpperCase() + words.slice(1), "This image was not generated."];
}

function imageTile(image, total, fileStem) {
  const n = Number(image.index) + 1;
  const seedText = image.seed === null || image.seed === undefined ? "" : String(image.seed);
  if (image.status === "SUCCEEDED" && image.url) {
    const input = el("input", {
      type: "radio",
      name: "pick",
      value: String(image.index),
      class: "visually-hidden",
      "aria-label": `Image ${n} of ${total}, seed ${seedText}`,
    });
    const img = el("img", {
      src: image.url,
      alt: `Image ${n} of ${total}, seed ${seedText}`,
      width: image.width || null,
      height: image.height || null,
      decoding: "async",
    });
    const size = image.width && image.height ? `${image.width}×${image.height}` : "";
    const caption = el(
      "span",
      { class: "caption" },
      el("span", { class: "caption-index", text: `#${n}` }),
      el("span", { class: "caption-seed" }, "seed ", el("code", { class: "seed", text: seedText })),
      size ? el("span", { class: "caption-size", text: size }) : null,
    );
    const tile = el("label", { class: "tile tile-image", "data-index": image.index, "data-seed": seedText }, input, el("span", { class: "frame" }, img), caption);
    img.addEventListener("error", () => {
      tile.classList.add("tile-broken");
      tile.querySelector(".frame").replaceChildren(el("span", { class: "broken-text", text: "The image could not be loaded; its link may have expired." }));
    });
    input.addEventListener("change", () => select(image, fileStem));
    return tile;
  }
  const [title, text] = reasonInWords(image);
  const kind = image.status === "FILTERED" ? "tile-filtered" : "tile-failed";
  return el(
    "div",
    { class: `tile tile-problem ${kind}`, "data-index": image.index, "data-seed": seedText, "data-reason": image.reason_code || "" },
    el(
      "div",
      { class: "problem" },
      el("span", { class: "problem-icon", "aria-hidden": "true", text: image.status === "FILTERED" ? "⊘" : "!" }),
      el("p", { class: "problem-title", text: title }),
      el("p", { class: "problem-text", text }),
      image.message && image.message !== text ? el("p", { class: "problem-message", text: image.message }) : null,
      image.reason_code ? el("p", { class: "problem-code" }, el("code", { text: image.reason_code })) : null,
    ),
    el("span", { class: "caption" }, el("span", { class: "caption-index", text: `#${n}` }), seedText ? el("span", { class: "caption-seed" }, "seed ", el("code", { class: "seed", text: seedText })) : null),
  );
}

function modelName(id) {
  return state.models.find((m) => m.id === id)?.name || id || "";
}

function showJob(job, request) {
  const manifest = job.manifest;
  if (job.status === "failed") {
    const error = job.error || {};
    if (error.error === "InvalidRequest" && Array.isArray(error.details) && error.details.length) {
      showRequestErrors(error.message || JOB_ERRORS.InvalidRequest, error.details);
    }
    const words = JOB_ERRORS[error.error] || "The job failed.";
    showFailure(words, error.message && error.message !== words ? error.message : "");
    return;
  }
  dom.status.classList.remove("is-running", "is-error");
  dom.progress.hidden = true;
  const images = [...(manifest?.images || [])].sort((a, b) => a.index - b.index);
  if (!images.length) {
    showFailure("The job finished without a manifest of images.");
    return;
  }
  const ok = images.filter((i) => i.status === "SUCCEEDED").length;
  const filtered = images.filter((i) => i.status === "FILTERED").length;
  const failed = images.length - ok - filtered;
  const extra = [filtered ? `${filtered} filtered` : "", failed ? `${failed} failed` : ""].filter(Boolean).join(", ");
  dom.statusText.textContent =
    ok === images.length
      ? `${ok} image${ok === 1 ? "" : "s"} ready. Pick one.`
      : `${ok} of ${images.length} images generated${extra ? ` (${extra})` : ""}.${ok ? " Pick one." : ""}`;
  const params = manifest.parameters || {};
  const size = params.aspect_ratio || (params.width && params.height ? `${params.width}×${params.height}` : "");
  dom.resultsMeta.textContent = [modelName(manifest.model?.id || request.model), size].filter(Boolean).join(" · ");
  const stem = params.file_name_prefix || "image";
  dom.grid.dataset.count = String(images.length);
  dom.grid.replaceChildren(...images.map((image) => imageTile(image, images.length, stem)));
  dom.actions.hidden = ok === 0;
  // An image picked while the job ran stays picked, now with the manifest's links.
  const kept = state.selected && images.find((i) => i.status === "SUCCEEDED" && i.index === state.selected.index);
  if (kept) {
    const input = dom.grid.querySelector(`input[value="${kept.index}"]`);
    if (input) input.checked = true;
    select(kept, stem);
  } else {
    clearSelection();
    dom.selectionText.textContent = "Select an image to download it or re-run its seed.";
  }
  dom.results.focus({ preventScroll: true });
}

// -- selection, download, re-run -------------------------------------------------------------

function clearSelection() {
  state.selected = null;
  dom.download.removeAttribute("href");
  dom.download.removeAttribute("download");
  dom.download.setAttribute("aria-disabled", "true");
  dom.rerun.disabled = true;
}

function select(image, fileStem) {
  state.selected = image;
  for (const tile of dom.grid.querySelectorAll(".tile-image")) {
    tile.classList.toggle("is-selected", tile.dataset.index === String(image.index));
  }
  // download_url is served as an attachment (a browser ignores `download` on another origin's link).
  // An attachment leaves the page where it is; a plain image link opens in a new tab instead.
  dom.download.href = image.download_url || image.url;
  if (image.download_url) dom.download.removeAttribute("target");
  else dom.download.setAttribute("target", "_blank");
  // The key's file name, the one S3 (or the local server) names the attachment with.
  const keyName = String(image.key || "").split("/").pop();
  dom.download.setAttribute("download", keyName || `${fileStem}-seed-${image.seed}.png`);
  dom.download.setAttribute("aria-disabled", "false");
  dom.rerun.disabled = dom.generate.disabled;
  dom.selectionText.replaceChildren(`Image ${Number(image.index) + 1} selected, seed `, el("code", { text: String(image.seed) }), ".");
}

function onDownloadClick(event) {
  if (dom.download.getAttribute("aria-disabled") === "true") event.preventDefault();
}

/** Re-run the last request for one image with the selected image's seed. */
async function onRerun() {
  if (!state.selected || !state.lastRequest) return;
  const request = { ...state.lastRequest, seed: Number(state.selected.seed), count: 1 };
  fillForm(request);
  dom.advanced.open = true;
  clearErrors();
  await startJob(request);
}

// -- start -----------------------------------------------------------------------------------

function init() {
  if (config.apiKeyRequired && !config.apiKey) {
    dom.apiKeyField.hidden = false;
    dom.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  }
  dom.form.addEventListener("submit", onSubmit);
  dom.model.addEventListener("change", onModelChange);
  dom.prompt.addEventListener("input", () => {
    updatePromptCount();
    clearFieldError("prompt");
  });
  for (const field of FORM_FIELDS.filter((f) => f !== "prompt" && f !== "model")) {
    $(field).addEventListener("input", () => clearFieldError(field));
  }
  dom.apiKey.addEventListener("input", () => clearFieldError("api_key"));
  dom.download.addEventListener("click", onDownloadClick);
  dom.rerun.addEventListener("click", onRerun);
  updatePromptCount();
  loadModels();
}

init();
