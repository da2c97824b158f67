// imagegen web page: type a prompt, see four images, pick one.
//
// Plain ES module, no framework, no build step. It talks to the imagegen API:
//   GET /models          -> the models this deployment offers
//   POST /jobs           -> 202 {job_id, status, status_url}, or 400 {error, message, details[]}
//   GET /jobs/{id}       -> {job_id, status, progress?, manifest? | error?}
//   GET /jobs/{id}/events -> Server-Sent Events: one `image` event per image as it is stored, then the
//                            end; read with fetch (an EventSource cannot send x-api-key), resumed with
//                            Last-Event-ID after each batch (the deployed API answers one batch a request)
//   DELETE /jobs/{id}    -> cancels a running job (it ends `cancelled`, keeping what it made)
//   POST /jobs/{id}/retry -> a new job of the images that failed, same indexes and seeds
//   GET /jobs?limit=     -> the caller's jobs, newest first: the page's history
//   POST /jobs {source_image, operation, …} -> a job refining a stored image (upscale, variation, edit)
// Configuration comes from config.js: window.IMAGEGEN_CONFIG = {apiUrl, apiKey, apiKeyRequired, auth};
// with auth (a Cognito user pool) web/auth.js signs people in and every call carries their ID token.

import { authHeaders, startAuth } from "./auth.js";

const POLL_FIRST_MS = 400;
const POLL_MAX_MS = 1500;
const POLL_GIVE_UP_MS = 15 * 60 * 1000;
const POLL_RETRIES = 4;
const KEY_STORAGE = "imagegen.apiKey";
/** The requests this browser sent, by job id (localStorage): a failed job's prompt is in no manifest. */
const REQUESTS_STORAGE = "imagegen.requests";
const REQUESTS_KEPT = 50;
const HISTORY_LIMIT = 12;
/** Job documents read at once for the history (each GET /jobs/{id} of an ended job signs its links). */
const HISTORY_READS_AT_ONCE = 3;

/** The request's fields (contract/request.py's ImageRequest) a request is rebuilt from, from a manifest. */
const REQUEST_FIELDS = [
  "prompt", "negative_prompt", "count", "model", "width", "height", "aspect_ratio", "quality", "cfg_scale",
  "seed", "style", "output_folder", "file_name_prefix",
  "source_image", "operation", "upscale_mode", "strength", "search_prompt", "mask_image", "mask_prompt",
  "left", "right", "up", "down", "style_image", "creativity", "grow_mask", "style_strength",
  "composition_fidelity", "change_strength",
];

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
  CANCELLED: ["Cancelled", "Not made: the job was cancelled before this image started."],
};

/**
 * A job-level error name: [what happened, what to do, whether Retry (the same request again) can help].
 * The API's own message is not shown: it names reason codes and where the manifest is stored.
 */
const JOB_ERRORS = {
  InvalidRequest: ["The request cannot be served.", "Change the highlighted fields and generate again.", false],
  AllImagesFiltered: [
    "Every image was blocked by the content filter.",
    "Change the prompt (or add a negative prompt) and generate again.",
    false,
  ],
  ImagesThrottled: ["The model was too busy to make any image.", "Wait a minute, then retry.", true],
  ImagesFailed: ["No image could be made.", "Retry; if it fails again, choose another model.", true],
  ExecutionTimedOut: ["The job took too long and was stopped.", "Retry, or ask for fewer images.", true],
  "States.Timeout": ["The job took too long and was stopped.", "Retry, or ask for fewer images.", true],
  ExecutionAborted: ["The job was stopped before it finished.", "Retry to run it again.", true],
};
const JOB_ERROR_OTHER = ["The job failed.", "Retry; if it keeps failing, tell the deployment's operator the job id.", true];


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
    // A spent daily limit (SpendLimitExceeded) resets at midnight UTC: retrying now cannot help.
    if (this.body?.error === "SpendLimitExceeded") return false;
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
  Object.assign(headers, await authHeaders()); // sign-in (web/auth.js): the ID token, if any
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
  if (status === 429 && body?.error === "SpendLimitExceeded") return said; // what is left, when it resets
  if (status === 429) return "Too many requests right now. Wait a moment and try again.";
  if (status >= 500) return `The server failed (HTTP ${status})${said ? `: ${said}` : ""}. Try again.`;
  return said || `Unexpected answer from the API (HTTP ${status}).`;
}

const jobPath = (jobId) => `jobs/${encodeURIComponent(jobId)}`;

const api = {
  models: () => callApi("GET", apiUrl("models")),
  createJob: (request) => callApi("POST", apiUrl("jobs"), request),
  job: (url) => callApi("GET", url),
  jobs: (limit, nextToken = null) =>
    callApi("GET", apiUrl(`jobs?limit=${limit}${nextToken ? `&next_token=${encodeURIComponent(nextToken)}` : ""}`)),
  cancel: (jobId) => callApi("DELETE", apiUrl(jobPath(jobId))),
  retry: (jobId) => callApi("POST", apiUrl(`${jobPath(jobId)}/retry`), {}),
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
  resultsPrompt: $("results-prompt"),
  status: $("status"),
  statusText: $("status-text"),
  progress: $("progress"),
  grid: $("grid"),
  actions: $("actions"),
  selectionText: $("selection-text"),
  download: $("download"),
  rerun: $("rerun"),
  cancel: $("cancel"),
  retry: $("retry"),
  modelsFailed: $("models-failed"),
  modelsFailedText: $("models-failed-text"),
  modelsRetry: $("models-retry"),
  history: $("history"),
  historyStatus: $("history-status"),
  historyList: $("history-list"),
  historyRetry: $("history-retry"),
  historyMore: $("history-more"),
  viewer: $("viewer"),
  viewerTitle: $("viewer-title"),
  viewerImage: $("viewer-image"),
  viewerPrompt: $("viewer-prompt"),
  viewerNegative: $("viewer-negative"),
  viewerNegativeTerm: $("viewer-negative-term"),
  viewerSeed: $("viewer-seed"),
  viewerModel: $("viewer-model"),
  viewerSize: $("viewer-size"),
  viewerDownload: $("viewer-download"),
  viewerRerun: $("viewer-rerun"),
  viewerClose: $("viewer-close"),
  resultsParent: $("results-parent"),
  edit: $("edit"),
  editForm: $("edit-form"),
  editTitle: $("edit-title"),
  editSearch: $("edit-search"),
  editMask: $("edit-mask"),
  editPrompt: $("edit-prompt"),
  editPromptLabel: $("edit-prompt-label"),
  editCount: $("edit-count"),
  editError: $("edit-error"),
  editClose: $("edit-close"),
};

// -- state -----------------------------------------------------------------------------------

const state = {
  models: [],
  parent: null, // the image the results were made from (an upscale, variation or edit of it), or null
  lastRequest: null, // the request the results are of (what Retry and Re-run send again)
  jobId: null, // the job the results are of
  images: [], // its images so far, by index (manifest entries)
  total: 0, // how many it asked for
  running: false,
  retrying: false, // a retry of the failed images runs: its images go in place of the failed tiles
  shape: "1 / 1", // CSS aspect-ratio of the images being generated
  selected: null, // the selected manifest image
  viewing: null, // the image in the full-size view
};

// -- bringing things into view -------------------------------------------------------------

function prefersReducedMotion() {
  return window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}

/**
 * Scroll so that `node` is in the window, unless it already is: results and errors arrive below the
 * form on a phone, and the user who pressed Generate should see them without scrolling. Instant when
 * the user asks for reduced motion.
 */
function bringIntoView(node) {
  if (!node || node.hidden) return;
  const rect = node.getBoundingClientRect();
  const height = window.innerHeight || document.documentElement.clientHeight;
  if (rect.top >= 0 && rect.bottom <= height) return;
  node.scrollIntoView({
    behavior: prefersReducedMotion() ? "auto" : "smooth",
    block: rect.height > height ? "start" : "nearest",
  });
}

// -- requests this browser sent --------------------------------------------------------------

function rememberedRequests() {
  try {
    const kept = JSON.parse(localStorage.getItem(REQUESTS_STORAGE) || "{}");
    return kept && typeof kept === "object" ? kept : {};
  } catch {
    return {};
  }
}

/** Keep the request a job was started with (the last REQUESTS_KEPT), for the history. */
function rememberRequest(jobId, request) {
  const kept = rememberedRequests();
  kept[jobId] = { request, at: new Date().toISOString() };
  const newest = Object.entries(kept)
    .sort((a, b) => String(b[1].at).localeCompare(String(a[1].at)))
    .slice(0, REQUESTS_KEPT);
  try {
    localStorage.setItem(REQUESTS_STORAGE, JSON.stringify(Object.fromEntries(newest)));
  } catch {
    // storage full or turned off: the history then shows what the API has
  }
}

/** The request a manifest was made from (its prompt and parameters), as POST /jobs takes it. */
function requestOfManifest(manifest) {
  const params = manifest?.parameters || {};
  const request = {};
  for (const field of REQUEST_FIELDS) {
    const value = field === "prompt" || field === "negative_prompt" ? manifest?.[field] : params[field];
    if (value !== null && value !== undefined) request[field] = value;
  }
  // A refined image's manifest keeps the operation's own fields apart (docs/api.md).
  const extra = params.operation_parameters;
  if (extra && typeof extra === "object") {
    for (const [field, value] of Object.entries(extra)) {
      if (REQUEST_FIELDS.includes(field) && value !== null && value !== undefined) request[field] ??= value;
    }
  }
  // Inpainting by a mask prompt runs as search-and-replace, so the manifest keeps it as search_prompt.
  if (request.operation === "inpaint" && request.search_prompt && !request.mask_image) {
    request.mask_prompt = request.search_prompt;
    delete request.search_prompt;
  }
  if (!request.model && manifest?.model?.id && !request.operation) request.model = manifest.model.id;
  return request;
}

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
  dom.modelsFailed.hidden = true;
  dom.modelsRetry.disabled = true;
  let body;
  try {
    body = await api.models();
  } catch (error) {
    // Said, with a way to try again; the request can still go to the deployment's default model.
    dom.model.replaceChildren(el("option", { value: "", text: "The deployment's default model" }));
    dom.modelsFailedText.textContent = `The list of models could not be loaded. ${error.message} Until it loads, images are made by the deployment's default model.`;
    dom.modelsFailed.hidden = false;
    dom.modelsRetry.disabled = false;
    onModelChange();
    return;
  }
  state.models = Array.isArray(body?.models) ? body.models : [];
  // The form draws from a prompt: the image services (text_to_image false) work on a picked image.
  const generators = state.models.filter((m) => m.text_to_image !== false);
  const options = generators.map((m) => {
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
  const offered = generators.filter((m) => m.enabled !== false);
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

/** Ctrl+Enter (Cmd+Enter on a Mac) in the prompt or the negative prompt generates. */
function onPromptKey(event) {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.isComposing) return;
  event.preventDefault();
  if (!dom.generate.disabled) dom.form.requestSubmit(dom.generate);
}

/** The results show `request`, nothing of an earlier job. */
function beginResults(request, parent = null) {
  stopFollowing();
  state.lastRequest = request;
  state.parent = parent;
  state.shape = parent?.image?.width && parent?.image?.height ? `${parent.image.width} / ${parent.image.height}` : shapeOf(request);
  state.jobId = null;
  state.images = [];
  state.total = request.count || 4;
  state.retrying = false;
  state.cancelRequested = false;
  clearSelection();
}

/** How many images a request makes when it does not say (docs/api.md: upscale and remove-background 1). */
function countOf(request) {
  if (request.count) return request.count;
  return request.operation === "upscale" || request.operation === "remove-background" ? 1 : 4;
}

/** Start a job of `request` (of `parent`, an image it refines) and follow it to its end. */
async function startJob(request, parent = null) {
  beginResults(request, parent);
  setBusy(true);
  showPending(countOf(request), "Sending the request…");
  bringIntoView(dom.results);
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
      showFailure(error.message, "", error.retryable ? "request" : null);
    }
    return;
  }
  const jobId = created?.job_id;
  if (!jobId) {
    setBusy(false);
    showFailure("The API accepted the request but returned no job id.", "", "request");
    return;
  }
  rememberRequest(jobId, request);
  refreshHistory(); // the new job is listed (running) at once
  await followJob(jobId, request, created.status_url);
}

/** Stop following the job shown (it goes on running: the history has it). */
function stopFollowing() {
  state.follow?.abort();
  state.follow = null;
}

/**
 * Follow a job to its end: placeholders and progress while it runs, each image as it is stored
 * (GET /jobs/{id}/events), then the manifest (or the failure). The polls of GET /jobs/{id} give the
 * status, the progress and the end.
 */
async function followJob(jobId, request, statusUrl = null) {
  const follow = new AbortController();
  state.follow = follow;
  state.jobId = jobId;
  state.running = true;
  setBusy(true);
  dom.retry.hidden = true;
  dom.cancel.hidden = false;
  dom.cancel.disabled = false;
  markCurrentHistory();
  const url = /^https?:/i.test(statusUrl || "") ? statusUrl : apiUrl(jobPath(jobId));
  let job;
  try {
    job = await pollJob(url, follow.signal, () => followEvents(jobId, follow.signal, showLiveImage));
  } catch (error) {
    if (follow.signal.aborted) return; // another job is shown now
    endRunning();
    showFailure(error.message, `Job ${jobId}`, error.retryable ? "request" : null);
    return;
  } finally {
    follow.abort(); // ends the event stream
  }
  if (state.follow !== follow) return;
  state.follow = null;
  endRunning();
  showJob(job, request);
  refreshHistory();
}

function endRunning() {
  state.running = false;
  dom.cancel.hidden = true;
  setBusy(false);
}

/** Cancel the job shown: it stops starting images and ends with what it made (DELETE /jobs/{id}). */
async function onCancel() {
  if (!state.jobId || !state.running) return;
  dom.cancel.disabled = true;
  state.cancelRequested = true;
  dom.statusText.textContent = CANCELLING_TEXT;
  try {
    await api.cancel(state.jobId);
  } catch (error) {
    if (error.status === 409) return; // it had just ended, or was already being cancelled: the polls show it
    state.cancelRequested = false;
    dom.cancel.disabled = false;
    dom.statusText.textContent = `The job could not be cancelled: ${error.message}`;
  }
}

const CANCELLING_TEXT = "Cancelling: the images being made are kept, the others are not started…";

/** Retry: the same request again, or (POST /jobs/{id}/retry) only the images that failed. */
async function onRetry() {
  if (state.retryAction === "failed-images") await retryFailedImages();
  else if (state.lastRequest) {
    if (!state.lastRequest.operation) fillForm(state.lastRequest);
    clearErrors();
    await startJob(state.lastRequest, state.parent);
  }
}

/** Make the failed (or cancelled) images of the job shown again, in place of their tiles. */
async function retryFailedImages() {
  const jobId = state.jobId;
  dom.retry.disabled = true;
  let started;
  try {
    started = await api.retry(jobId);
  } catch (error) {
    dom.retry.disabled = false;
    dom.statusText.textContent = `The images could not be retried: ${error.message}`;
    return;
  } finally {
    dom.retry.disabled = false;
  }
  state.retrying = true;
  state.cancelRequested = false;
  for (const { index } of started.images || []) {
    const tile = dom.grid.querySelector(`.tile[data-index="${index}"]`);
    if (tile) tile.replaceWith(placeholder(Number(index)));
  }
  dom.status.classList.remove("is-error");
  dom.status.classList.add("is-running");
  dom.statusText.textContent = "Making the missing images again…";
  rememberRequest(started.job_id, state.lastRequest);
  await followJob(started.job_id, state.lastRequest, started.status_url);
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
    Object.assign(headers, await authHeaders());
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
  const index = Number(image.index);
  if (!Number.isInteger(index) || index < 0) return;
  const pending = dom.grid.querySelector(`.tile-pending[data-index="${index}"]`);
  if (!pending) return;
  const first = !dom.grid.querySelector(".tile-image, .tile-problem");
  state.images[index] = image;
  pending.replaceWith(imageTile(image, state.total, "image"));
  if (image.status === "SUCCEEDED" && dom.actions.hidden) {
    dom.actions.hidden = false; // a picture may be picked (and downloaded) before the others are made
    dom.selectionText.textContent = "Select an image to download it or re-run its seed.";
  }
  if (first) bringIntoView(dom.results);
}

/**
 * Poll a job until it ends, showing its progress; gives up after 15 minutes, and stops (AbortError)
 * when `signal` aborts. onRunning() is called once, when the job is first seen queued or running.
 */
async function pollJob(url, signal, onRunning = () => {}) {
  let running = false;
  const deadline = performance.now() + POLL_GIVE_UP_MS;
  let delay = POLL_FIRST_MS;
  let failures = 0;
  for (;;) {
    if (signal.aborted) throw new DOMException("No longer shown", "AbortError");
    let job;
    try {
      job = await api.job(url);
      failures = 0;
    } catch (error) {
      if (signal.aborted || !error.retryable || ++failures > POLL_RETRIES) throw error;
      showProgress(null, `Connection trouble, retrying (${failures} of ${POLL_RETRIES})…`);
      await sleep(delay * 2 ** failures);
      continue;
    }
    if (signal.aborted) throw new DOMException("No longer shown", "AbortError");
    // A job cancelled here or elsewhere (DELETE /jobs/{id}) ends too, with the images it made.
    if (job.status === "succeeded" || job.status === "failed" || job.status === "cancelled") return job;
    if (!running) {
      running = true;
      onRunning();
    }
    const cancelling = job.status === "cancelling" || state.cancelRequested;
    if (job.status === "cancelling") dom.cancel.disabled = true;
    showProgress(job.progress, cancelling ? CANCELLING_TEXT : job.status === "queued" ? "Queued…" : null);
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
  dom.resultsPrompt.textContent = "";
  dom.resultsParent.hidden = true;
  dom.actions.hidden = true;
  dom.retry.hidden = true;
  dom.cancel.hidden = true;
}

/** The tile of an image not made yet; hidden from screen readers (the status says how far it is). */
function placeholder(index) {
  const frame = el("span", { class: "frame" });
  frame.style.aspectRatio = state.shape; // CSSOM, not a style attribute: allowed by the page's CSP
  const caption = el("span", { class: "caption" }, el("span", { class: "caption-index", text: `#${index + 1}` }));
  return el("div", { class: "tile tile-pending", "data-index": index, "aria-hidden": "true" }, frame, caption);
}

function showPending(count, text) {
  dom.status.classList.remove("is-error");
  dom.status.classList.add("is-running");
  dom.statusText.textContent = text;
  dom.progress.hidden = false;
  dom.progress.removeAttribute("value"); // indeterminate until the total is known
  dom.resultsMeta.textContent = "";
  dom.resultsPrompt.textContent = state.lastRequest?.prompt || "";
  renderParent();
  dom.actions.hidden = true;
  dom.retry.hidden = true;
  const n = Math.max(1, Math.min(count || 4, 40));
  state.total = n;
  dom.grid.dataset.count = String(n);
  dom.grid.replaceChildren(...Array.from({ length: n }, (_, i) => placeholder(i)));
}

function showProgress(progress, text) {
  const total = Number(progress?.total) || 0;
  const done = Number(progress?.done) || 0;
  const failed = Number(progress?.failed) || 0;
  if (total > 0) {
    dom.progress.max = total;
    dom.progress.value = done + failed;
    // A retry makes some of the images again, in place: its total is not the grid's.
    if (!state.retrying && dom.grid.children.length !== total) showPending(total, "");
  }
  dom.progress.hidden = false;
  if (text) dom.statusText.textContent = text;
  else if (total > 0) {
    dom.statusText.textContent = `Generating: ${done + failed} of ${total} images finished${failed ? ` (${failed} failed)` : ""}…`;
  } else dom.statusText.textContent = "Checking the request…";
}

/**
 * A failure in the results area: what happened, what to do (`advice`), and Retry when it can help
 * (`retry`: "request" sends the same request again). Brought into view.
 */
function showFailure(message, advice = "", retry = null) {
  dom.grid.replaceChildren();
  dom.progress.hidden = true;
  dom.cancel.hidden = true;
  dom.status.classList.remove("is-running");
  dom.status.classList.add("is-error");
  dom.statusText.replaceChildren(el("strong", { text: message }));
  if (advice) dom.statusText.append(el("span", { class: "status-detail", text: advice }));
  dom.actions.hidden = true;
  state.retryAction = retry;
  dom.retry.textContent = "Retry";
  // Only with a request to send again (a job opened from the history may have none this page knows).
  dom.retry.hidden = !(retry && (state.lastRequest?.prompt || state.lastRequest?.operation));
  bringIntoView(dom.results);
}

// -- rendering: results ----------------------------------------------------------------------

function reasonInWords(image) {
  const known = REASONS[image.reason_code];
  if (known) return known;
  return image.status === "FILTERED"
    ? ["Blocked by the content filter", "The content filter withheld this image."]
    : ["Not made", "This image could not be generated."];
}

/**
 * What stopped a job's images, in words, from its error message ("No image was generated
 * (CONTENT_FILTERED_OUTPUT x4). …"): the codes and counts only, never the message itself, which
 * names where the manifest is stored.
 */
function jobReasonsInWords(message) {
  const found = [...String(message || "").matchAll(/\b([A-Z][A-Z_]+) x(\d+)\b/g)];
  const parts = found.map(([, code, n]) => {
    const [title, text] = REASONS[code] || reasonInWords({ status: "FAILED" });
    return `${n} image${n === "1" ? "" : "s"}: ${title.toLowerCase()}. ${text}`;
  });
  return parts.join(" ");
}

/** What a screen reader says for an image, once: its position, seed and prompt. */
function imageName(image, total) {
  const prompt = state.lastRequest?.prompt || state.parent?.request?.prompt;
  return `Image ${Number(image.index) + 1} of ${total}, seed ${image.seed}${prompt ? `: ${prompt}` : ""}`;
}

function imageTile(image, total, fileStem) {
  const n = Number(image.index) + 1;
  const seedText = image.seed === null || image.seed === undefined ? "" : String(image.seed);
  if (image.status === "SUCCEEDED" && image.url) {
    // The radio carries the image's name; the picture and the caption say nothing more to a screen
    // reader, so each image is announced once.
    const input = el("input", {
      type: "radio",
      name: "pick",
      value: String(image.index),
      class: "visually-hidden",
      "aria-label": imageName(image, total),
    });
    const img = el("img", {
      src: image.url,
      alt: "",
      width: image.width || null,
      height: image.height || null,
      decoding: "async",
    });
    const size = image.width && image.height ? `${image.width}×${image.height}` : "";
    const caption = el(
      "span",
      { class: "caption", "aria-hidden": "true" },
      el("span", { class: "caption-index", text: `#${n}` }),
      el("span", { class: "caption-seed" }, "seed ", el("code", { class: "seed", text: seedText })),
      image.cached ? el("span", { class: "caption-cached", title: "Served from the prompt cache: no model call", text: "cached" }) : null,
      size ? el("span", { class: "caption-size", text: size }) : null,
    );
    const pick = el("label", { class: "tile-pick" }, input, el("span", { class: "frame" }, img), caption);
    const view = el("button", { type: "button", class: "tile-view", "aria-label": `View image ${n} full size`, title: "View full size" }, el("span", { "aria-hidden": "true", text: "⤢" }));
    const tools = image.key ? refineButtons(image, n) : null;
    const tile = el("div", { class: "tile tile-image", "data-index": image.index, "data-seed": seedText }, pick, view, tools);
    img.addEventListener("error", () => {
      tile.classList.add("tile-broken");
      tile.querySelector(".frame").replaceChildren(el("span", { class: "broken-text", text: "The image could not be loaded; its link may have expired." }));
    });
    input.addEventListener("change", () => select(image, fileStem));
    view.addEventListener("click", () => openViewer(image));
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
      el("p", { class: "problem-title", text: `Image ${n}: ${title}` }),
      el("p", { class: "problem-text", text }),
    ),
    el("span", { class: "caption", "aria-hidden": "true" }, el("span", { class: "caption-index", text: `#${n}` }), seedText ? el("span", { class: "caption-seed" }, "seed ", el("code", { class: "seed", text: seedText })) : null),
  );
}

/** Upscale, Vary (4) and Edit under an image (a new job from it: its results show it as their parent). */
function refineButtons(image, n) {
  const button = (text, label, onClick) => {
    // The name starts with the visible words (WCAG 2.5.3), then says which image.
    const node = el("button", { type: "button", class: "button small", "aria-label": `${label} image ${n}`, text });
    node.addEventListener("click", onClick);
    return node;
  };
  return el(
    "div",
    { class: "tile-refine" },
    button("Upscale", "Upscale", () => refine(image, "upscale")),
    button("Vary (4)", "Vary (4)", () => refine(image, "variation", { count: 4, ...(state.lastRequest?.prompt ? { prompt: state.lastRequest.prompt } : {}) })),
    button("Edit", "Edit", () => openEdit(image)),
  );
}

function modelName(id) {
  const key = typeof id === "object" && id ? id.id : id;
  return state.models.find((m) => m.id === key)?.name || key || "";
}

function showJob(job, request) {
  const manifest = job.manifest;
  if (job.status === "failed") {
    const error = job.error || {};
    if (error.error === "InvalidRequest" && Array.isArray(error.details) && error.details.length) {
      showRequestErrors(error.message || JOB_ERRORS.InvalidRequest[0], error.details);
    }
    const [what, todo, retry] = JOB_ERRORS[error.error] || JOB_ERROR_OTHER;
    const advice = [jobReasonsInWords(error.message), todo].filter(Boolean).join(" ");
    showFailure(what, advice, retry ? "request" : null);
    return;
  }
  dom.status.classList.remove("is-running", "is-error");
  dom.progress.hidden = true;
  let images = [...(manifest?.images || [])];
  if (state.retrying) {
    // A retry's manifest has the images it made again, with their own index: merged in place.
    const merged = new Map(state.images.filter(Boolean).map((image) => [Number(image.index), image]));
    for (const image of images) merged.set(Number(image.index), image);
    images = [...merged.values()];
    state.retrying = false;
  }
  images.sort((a, b) => a.index - b.index);
  state.images = images;
  state.total = images.length;
  if (!images.length) {
    showFailure("The job ended without any image.", "Generate again.", manifest?.cancelled ? null : "request");
    return;
  }
  const ok = images.filter((i) => i.status === "SUCCEEDED").length;
  const filtered = images.filter((i) => i.status === "FILTERED").length;
  const failed = images.length - ok - filtered;
  const extra = [filtered ? `${filtered} filtered` : "", failed ? `${failed} ${manifest?.cancelled ? "not made" : "failed"}` : ""].filter(Boolean).join(", ");
  if (manifest?.cancelled) {
    dom.statusText.textContent = `Cancelled: ${ok} of ${images.length} images were made and are kept.${ok ? " Pick one." : ""}`;
  } else {
    dom.statusText.textContent =
      ok === images.length
        ? `${ok} image${ok === 1 ? "" : "s"} ready. Pick one.`
        : `${ok} of ${images.length} images generated${extra ? ` (${extra})` : ""}.${ok ? " Pick one." : ""}`;
  }
  const params = manifest?.parameters || {};
  const size = params.aspect_ratio || (params.width && params.height ? `${params.width}×${params.height}` : "");
  dom.resultsMeta.textContent = [modelName(manifest?.model?.id || request.model), size].filter(Boolean).join(" · ");
  dom.resultsPrompt.textContent = manifest?.prompt || request.prompt || "";
  renderParent(manifest);
  const stem = params.file_name_prefix || "image";
  const focused = dom.grid.contains(document.activeElement) ? document.activeElement.closest(".tile")?.dataset.index : null;
  dom.grid.dataset.count = String(images.length);
  dom.grid.replaceChildren(...images.map((image) => imageTile(image, images.length, stem)));
  dom.actions.hidden = ok === 0;
  // Images that failed (throttled, timed out, cancelled …) can be made again, with their seeds.
  state.retryAction = failed ? "failed-images" : null;
  dom.retry.textContent = `Make the ${failed} missing image${failed === 1 ? "" : "s"} again`;
  dom.retry.hidden = !failed;
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
  if (focused !== null && focused !== undefined) {
    dom.grid.querySelector(`.tile[data-index="${focused}"] input, .tile[data-index="${focused}"] .tile-view`)?.focus();
  } else if (document.activeElement === document.body || document.activeElement === dom.generate) {
    dom.results.focus({ preventScroll: true });
  }
  bringIntoView(dom.results);
}

// -- selection, download, re-run -------------------------------------------------------------

function clearSelection() {
  state.selected = null;
  dom.download.removeAttribute("href");
  dom.download.removeAttribute("download");
  dom.download.setAttribute("aria-disabled", "true");
  dom.rerun.disabled = true;
}

/** The file name a download is saved under: the key's, the one S3 (or the local server) names it with. */
function fileNameOf(image, fileStem = "image") {
  const keyName = String(image.key || "").split("/").pop();
  return keyName || `${fileStem}-seed-${image.seed}.png`;
}

/** Point a Download link at an image. */
function linkDownload(link, image, fileStem) {
  // download_url is served as an attachment (a browser ignores `download` on another origin's link).
  // An attachment leaves the page where it is; a plain image link opens in a new tab instead.
  link.href = image.download_url || image.url;
  if (image.download_url) link.removeAttribute("target");
  else link.setAttribute("target", "_blank");
  link.setAttribute("download", fileNameOf(image, fileStem));
}

function select(image, fileStem) {
  state.selected = image;
  for (const tile of dom.grid.querySelectorAll(".tile-image")) {
    tile.classList.toggle("is-selected", tile.dataset.index === String(image.index));
  }
  linkDownload(dom.download, image, fileStem);
  dom.download.setAttribute("aria-disabled", "false");
  dom.rerun.disabled = dom.generate.disabled;
  dom.selectionText.replaceChildren(`Image ${Number(image.index) + 1} selected, seed `, el("code", { text: String(image.seed) }), ".");
}

function onDownloadClick(event) {
  if (dom.download.getAttribute("aria-disabled") === "true") event.preventDefault();
}

/**
 * Re-run the request of the results for one image with `image`'s seed (the selected one): the same
 * parameters and seed, so the deployment's prompt cache can serve it without calling the model.
 */
async function rerun(image) {
  if (!image || !state.lastRequest || image.seed === null || image.seed === undefined) return;
  const request = { ...state.lastRequest, seed: Number(image.seed), count: 1 };
  clearErrors();
  if (!request.operation) {
    fillForm(request);
    dom.advanced.open = true;
  }
  await startJob(request, state.parent);
}

// -- refining a picked image: upscale, vary, edit (docs/api.md, "Refining a stored image") ---

/** Refine `image` of the results shown: a new job whose images come from it. */
async function refine(image, operation, fields = {}) {
  if (!image?.key) return;
  const parent = {
    image,
    jobId: state.jobId,
    request: state.lastRequest,
    total: state.images.length || state.total,
    images: state.images.filter((i) => i?.status === "SUCCEEDED" && i.url),
  };
  const request = { source_image: image.key, operation, ...fields };
  clearErrors();
  return startJob(request, parent);
}

const REFINED = {
  upscale: "Upscaled",
  variation: "Variations",
  "search-and-replace": "Edited (search and replace)",
  inpaint: "Edited (repainted)",
  outpaint: "Extended",
  "remove-background": "Background removed",
  "style-transfer": "Restyled",
};

/** The line above the results saying which image they were made from, with a way back to it. */
function renderParent(manifest = null) {
  const lineage = manifest?.images?.find((i) => i.lineage)?.lineage;
  const operation = state.lastRequest?.operation || lineage?.operation;
  if (!operation) {
    dom.resultsParent.hidden = true;
    dom.resultsParent.replaceChildren();
    return;
  }
  const parent = state.parent;
  const image = parent?.image;
  const words = REFINED[operation] || `Made by ${operation}`;
  const from = image
    ? `${words} from image ${Number(image.index) + 1}${image.seed !== null && image.seed !== undefined ? ` (seed ${image.seed})` : ""}${parent.request?.prompt ? ` of “${parent.request.prompt}”` : ""}.`
    : `${words} from ${String(lineage?.source_image || state.lastRequest?.source_image || "").split("/").pop()}.`;
  const children = [];
  // The row it came from, small, the source marked: the new row of choices sits below it.
  const row = parent?.images?.length ? parent.images : image?.url ? [image] : [];
  if (row.length) {
    const thumbs = row.map((i) =>
      el(
        "li",
        { class: Number(i.index) === Number(image?.index) ? "is-source" : null },
        el("img", { src: i.url, alt: "", class: "parent-thumb", width: i.width || null, height: i.height || null }),
      ),
    );
    children.push(el("ol", { class: "parent-row", "aria-hidden": "true" }, ...thumbs));
  }
  children.push(el("span", { class: "parent-text", text: from }));
  if (parent?.jobId) {
    const back = el("button", { type: "button", class: "button small", text: "Show the images it came from" });
    back.addEventListener("click", () => openJob(parent.jobId));
    children.push(back);
  }
  dom.resultsParent.replaceChildren(...children);
  dom.resultsParent.hidden = false;
}

/** The edit form (a <dialog>) for `image`: search and replace, repaint by prompt, or extend. */
function openEdit(image) {
  state.editing = image;
  dom.editTitle.textContent = `Edit image ${Number(image.index) + 1}`;
  dom.editError.hidden = true;
  dom.editError.replaceChildren();
  onEditOperation();
  dom.edit.showModal();
}

function editOperation() {
  return dom.editForm.querySelector("input[name='edit-operation']:checked")?.value || "search-and-replace";
}

function onEditOperation() {
  const operation = editOperation();
  for (const part of dom.editForm.querySelectorAll("[data-edit]")) part.hidden = part.dataset.edit !== operation;
  dom.editPromptLabel.textContent = operation === "outpaint" ? "What the new parts show (optional)" : operation === "inpaint" ? "What to paint there" : "Replace it with";
}

/** The edit form's request fields, or the first field to fix. */
function readEdit() {
  const operation = editOperation();
  const fields = {};
  const prompt = dom.editPrompt.value.trim();
  const problems = [];
  if (operation === "search-and-replace") {
    const search = dom.editSearch.value.trim();
    if (!search) problems.push(["edit-search", "Say what to find in the image."]);
    else fields.search_prompt = search;
  }
  if (operation === "inpaint") {
    const mask = dom.editMask.value.trim();
    if (!mask) problems.push(["edit-mask", "Say which part of the image to repaint."]);
    else fields.mask_prompt = mask;
  }
  if (operation === "outpaint") {
    let any = false;
    for (const side of ["left", "right", "up", "down"]) {
      const text = $(`edit-${side}`).value.trim();
      if (!text) continue;
      if (!/^\d+$/.test(text)) problems.push([`edit-${side}`, "Pixels are a whole number, 0 or more."]);
      else if (Number(text) > 0) {
        fields[side] = Number(text);
        any = true;
      }
    }
    if (!any && !problems.length) problems.push(["edit-left", "Add pixels on at least one side."]);
  }
  if (prompt) fields.prompt = prompt;
  else if (operation !== "outpaint") problems.push(["edit-prompt", "Say what the edit should paint."]);
  const count = Number(dom.editCount.value);
  if (!Number.isInteger(count) || count < 1) problems.push(["edit-count", "Enter how many images, 1 or more."]);
  else fields.count = count;
  return { operation, fields, problems };
}

async function onEditSubmit(event) {
  event.preventDefault();
  const { operation, fields, problems } = readEdit();
  if (problems.length) {
    dom.editError.replaceChildren(el("p", { text: problems.map(([, m]) => m).join(" ") }));
    dom.editError.hidden = false;
    $(problems[0][0]).focus();
    return;
  }
  const image = state.editing;
  dom.edit.close();
  await refine(image, operation, fields);
}

// -- the full-size view ----------------------------------------------------------------------

function openViewer(image) {
  state.viewing = image;
  const request = state.lastRequest || {};
  const prompt = request.prompt || state.parent?.request?.prompt || "";
  const total = state.images.filter(Boolean).length > Number(image.index) ? state.images.length : state.total;
  dom.viewerTitle.textContent = `Image ${Number(image.index) + 1} of ${total}`;
  dom.viewerImage.src = image.url;
  dom.viewerImage.alt = prompt || `Image ${Number(image.index) + 1}`;
  if (image.width && image.height) {
    dom.viewerImage.width = image.width;
    dom.viewerImage.height = image.height;
  } else {
    dom.viewerImage.removeAttribute("width");
    dom.viewerImage.removeAttribute("height");
  }
  dom.viewerPrompt.textContent = prompt || "—";
  dom.viewerNegative.textContent = request.negative_prompt || "";
  dom.viewerNegative.hidden = !request.negative_prompt;
  dom.viewerNegativeTerm.hidden = !request.negative_prompt;
  dom.viewerSeed.textContent = String(image.seed);
  dom.viewerModel.textContent = modelName(request.model) || "The deployment's default model";
  dom.viewerSize.textContent = image.width && image.height ? `${image.width}×${image.height}` : "—";
  linkDownload(dom.viewerDownload, image, request.file_name_prefix || "image");
  dom.viewerRerun.disabled = state.running;
  dom.viewer.showModal();
}

function closeViewer() {
  if (dom.viewer.open) dom.viewer.close();
}

// -- history ---------------------------------------------------------------------------------

/** What the history knows of each job, by id: the list's fields, the job's document, the request sent. */
const history = new Map();

/** A job of GET /jobs, with what this browser and earlier reads know of it. */
function summaryOf(listed, known, sent) {
  const manifest = known?.manifest;
  const request = sent || (manifest ? requestOfManifest(manifest) : null);
  // GET /jobs carries each job's prompt, model, count and a thumbnail of its first image (docs/api.md);
  // an API whose list does not is completed from the job's document and the request this browser sent.
  const firstImage = listed.thumbnail?.url ? { index: 0, ...listed.thumbnail } : null;
  const images = manifest?.images || known?.images || (firstImage ? [{ status: "SUCCEEDED", ...firstImage }] : []);
  return {
    jobId: listed.job_id,
    status: known?.ended ? known.status : listed.status,
    created: listed.created_at || listed.started_at || null,
    prompt: listed.prompt ?? request?.prompt ?? manifest?.prompt ?? null,
    model: (typeof listed.model === "object" ? listed.model?.id : listed.model) ?? request?.model ?? manifest?.model?.id ?? null,
    count: listed.count ?? manifest?.requested ?? request?.count ?? null,
    images,
    request,
    manifest,
    ended: Boolean(known?.ended),
    error: listed.error || null,
  };
}

const STATUS_WORDS = {
  queued: "queued",
  running: "running",
  cancelling: "cancelling",
  succeeded: "done",
  cancelled: "cancelled",
  failed: "failed",
};

/** "Upscaled image-01-3701.png": what a refining request without a prompt is called in the history. */
function refinedName(request) {
  if (!request?.operation) return "";
  const words = REFINED[request.operation] || request.operation;
  return `${words}: ${String(request.source_image || "").split("/").pop()}`;
}

function historyItem(summary) {
  const pictures = summary.images.filter((i) => i.status === "SUCCEEDED" && i.url).slice(0, 4);
  const thumbs = pictures.length
    ? pictures.map((i) => el("img", { src: i.url, alt: "", width: i.width || null, height: i.height || null, loading: "lazy", decoding: "async" }))
    : [el("span", { class: "history-empty", text: summary.status === "failed" ? "!" : "…" })];
  const when = summary.created ? new Date(summary.created) : null;
  const failure = summary.status === "failed" && summary.error ? (JOB_ERRORS[summary.error.error] || JOB_ERROR_OTHER)[0] : "";
  const meta = [
    failure ? `failed: ${failure.charAt(0).toLowerCase()}${failure.slice(1).replace(/\.$/, "")}` : STATUS_WORDS[summary.status] || summary.status,
    modelName(summary.model),
    summary.count ? `${summary.count} image${summary.count === 1 ? "" : "s"}` : "",
    when && !Number.isNaN(when.getTime()) ? when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "",
  ].filter(Boolean);
  const button = el(
    "button",
    { type: "button", class: "history-open", "data-status": summary.status, "aria-current": summary.jobId === state.jobId ? "true" : null },
    el("span", { class: "history-thumbs", "aria-hidden": "true" }, ...thumbs),
    el(
      "span",
      { class: "history-text" },
      el("span", { class: "history-prompt", text: summary.prompt || refinedName(summary.request) || `Job ${summary.jobId}` }),
      el("span", { class: "history-meta", text: meta.join(" · ") }),
    ),
  );
  button.addEventListener("click", () => openJob(summary.jobId));
  return el("li", { class: "history-item", "data-job": summary.jobId }, button);
}

function markCurrentHistory() {
  for (const button of dom.historyList.querySelectorAll(".history-open")) {
    const current = button.closest("li").dataset.job === state.jobId;
    if (current) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

/** Run `work` over `items`, `width` at a time. */
async function inBatches(items, width, work) {
  const queue = [...items];
  const worker = async () => {
    while (queue.length) await work(queue.shift());
  };
  await Promise.all(Array.from({ length: Math.min(width, queue.length) }, worker));
}

let historyRound = 0;
/** GET /jobs's next_token after the jobs listed: "Show older requests" asks for the page it names. */
let historyNext = null;

/**
 * The caller's latest jobs (GET /jobs), each with its prompt and first images: what the list carries,
 * or the job's document (read once an ended job, a few at a time) and the request this browser sent.
 */
async function refreshHistory() {
  const round = ++historyRound;
  dom.historyRetry.hidden = true;
  let body;
  try {
    body = await api.jobs(HISTORY_LIMIT);
  } catch (error) {
    if (round !== historyRound) return;
    dom.historyStatus.textContent = `Your earlier requests could not be loaded. ${error.message}`;
    dom.historyRetry.hidden = false;
    return;
  }
  if (round !== historyRound) return;
  const listed = (Array.isArray(body?.jobs) ? body.jobs : []).filter((job) => job?.job_id);
  dom.historyStatus.textContent = listed.length
    ? "Your latest requests: open one to see its images and use its prompt again."
    : "Nothing yet: the requests you make will be listed here.";
  dom.historyList.replaceChildren();
  await showListed(listed, body?.next_token, round);
}

/** "Show older requests": the next page of GET /jobs, added below. */
async function showOlder() {
  if (!historyNext) return;
  const round = historyRound;
  dom.historyMore.disabled = true;
  let body;
  try {
    body = await api.jobs(HISTORY_LIMIT, historyNext);
  } catch (error) {
    dom.historyMore.disabled = false;
    dom.historyStatus.textContent = `Older requests could not be loaded. ${error.message}`;
    return;
  } finally {
    dom.historyMore.disabled = false;
  }
  if (round !== historyRound) return;
  await showListed((Array.isArray(body?.jobs) ? body.jobs : []).filter((job) => job?.job_id), body?.next_token, round);
}

/** Add jobs of GET /jobs to the history, then complete those the list says too little of. */
async function showListed(listed, nextToken, round) {
  historyNext = nextToken || null;
  dom.historyMore.hidden = !historyNext;
  const sent = rememberedRequests();
  const summaries = listed.map((job) => summaryOf(job, history.get(job.job_id), sent[job.job_id]?.request));
  dom.historyList.append(...summaries.map(historyItem));
  const unread = listed.filter((job, i) => {
    if (job.job_id === state.jobId && state.running) return false; // followed already
    const summary = summaries[i];
    const settled = job.status !== "running" && job.status !== "cancelling";
    return !history.get(job.job_id)?.ended && !(settled && summary.prompt && (summary.images.length || job.status === "failed"));
  });
  await inBatches(unread, HISTORY_READS_AT_ONCE, async (job) => {
    let read;
    try {
      read = await api.job(apiUrl(jobPath(job.job_id)));
    } catch {
      return; // the item keeps what the list said
    }
    const ended = read.status === "succeeded" || read.status === "cancelled" || read.status === "failed";
    history.set(job.job_id, { ended, status: read.status, manifest: read.manifest || null, images: read.images_so_far || [] });
    if (round !== historyRound) return;
    const item = dom.historyList.querySelector(`li[data-job="${CSS.escape(job.job_id)}"]`);
    item?.replaceWith(historyItem(summaryOf(job, history.get(job.job_id), sent[job.job_id]?.request)));
  });
}

/** Show an earlier job in the results (following it if it still runs), its request in the form. */
async function openJob(jobId) {
  const known = history.get(jobId);
  const sent = rememberedRequests()[jobId]?.request;
  const request = sent || (known?.manifest ? requestOfManifest(known.manifest) : {});
  clearErrors();
  if (request.prompt && !request.operation) fillForm(request);
  beginResults(request);
  showPending(request.count || known?.manifest?.requested || countOf(request), "Opening the request…");
  bringIntoView(dom.results);
  await followJob(jobId, request);
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
  dom.prompt.addEventListener("keydown", onPromptKey);
  dom.negative.addEventListener("keydown", onPromptKey);
  for (const field of FORM_FIELDS.filter((f) => f !== "prompt" && f !== "model")) {
    $(field).addEventListener("input", () => clearFieldError(field));
  }
  dom.apiKey.addEventListener("input", () => clearFieldError("api_key"));
  dom.download.addEventListener("click", onDownloadClick);
  dom.rerun.addEventListener("click", () => rerun(state.selected));
  dom.cancel.addEventListener("click", onCancel);
  dom.retry.addEventListener("click", onRetry);
  dom.modelsRetry.addEventListener("click", loadModels);
  dom.historyRetry.addEventListener("click", refreshHistory);
  dom.historyMore.addEventListener("click", showOlder);
  dom.viewerClose.addEventListener("click", closeViewer);
  dom.editForm.addEventListener("submit", onEditSubmit);
  dom.editForm.addEventListener("change", (event) => {
    if (event.target.name === "edit-operation") onEditOperation();
  });
  dom.editClose.addEventListener("click", () => dom.edit.close());
  dom.viewer.addEventListener("click", (event) => {
    if (event.target === dom.viewer) closeViewer(); // a click on the backdrop
  });
  dom.viewer.addEventListener("close", () => {
    // Focus goes back to the image's View button, even when the tiles were redrawn meanwhile.
    if (!document.activeElement || document.activeElement === document.body) {
      dom.grid.querySelector(`.tile[data-index="${state.viewing?.index}"] .tile-view`)?.focus();
    }
  });
  dom.viewerRerun.addEventListener("click", () => {
    const image = state.viewing;
    closeViewer();
    rerun(image);
  });
  updatePromptCount();
  // With sign-in, a code just handed back is exchanged for tokens before the first API call.
  startAuth(window.IMAGEGEN_CONFIG?.auth).catch(() => false).then(loadModels).then(refreshHistory);
}

init();
