// sinkstream web chat: a small client of the gateway's Realtime-style WebSocket (text subset).
// No build step and no dependencies: served as-is by gateway/web/routes.ts.

const REALTIME_PATH = "/v1/realtime";
const SETTINGS_KEY = "sinkstream.settings";
const STAT_NAMES = ["policy", "sinks", "window", "cached", "evicted", "seen"];

const el = {
  conn: document.getElementById("conn"),
  connText: document.getElementById("conn-text"),
  log: document.getElementById("log"),
  error: document.getElementById("error"),
  composer: document.getElementById("composer"),
  input: document.getElementById("input"),
  send: document.getElementById("send"),
  cancel: document.getElementById("cancel"),
  sessionId: document.getElementById("session-id"),
  settings: document.getElementById("settings"),
  apiKey: document.getElementById("api-key"),
  maxTokens: document.getElementById("max-tokens"),
  instructions: document.getElementById("instructions"),
};

const state = {
  /** @type {WebSocket | null} */
  ws: null,
  connId: 0,
  sessionId: null,
  /** Session id + token to resume after a dropped connection (cleared by "Apply"). */
  resumeId: null,
  resumeToken: null,
  eventSeq: 0,
  /** "idle" | "requested" (response.create sent) | "streaming" (response.created seen) */
  phase: "idle",
  responseId: null,
  /** @type {HTMLElement | null} the assistant message being streamed */
  current: null,
  reconnectDelay: 500,
  reconnectTimer: 0,
};

// ---------------------------------------------------------------- settings

function loadSettings() {
  const saved = savedSettings();
  if (typeof saved.apiKey === "string") el.apiKey.value = saved.apiKey;
  if (Number.isInteger(saved.maxTokens) && saved.maxTokens > 0) el.maxTokens.value = String(saved.maxTokens);
  if (typeof saved.instructions === "string") el.instructions.value = saved.instructions;
}

function currentSettings() {
  const maxTokens = Number.parseInt(el.maxTokens.value, 10);
  return {
    apiKey: el.apiKey.value.trim(),
    maxTokens: Number.isInteger(maxTokens) && maxTokens > 0 ? maxTokens : null,
    instructions: el.instructions.value,
  };
}

function savedSettings() {
  try {
    return JSON.parse(sessionStorage.getItem(SETTINGS_KEY) ?? "{}") ?? {};
  } catch {
    return {};
  }
}

function saveSettings(settings) {
  try {
    sessionStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  } catch {
    // Not fatal: settings just won't survive a reload.
  }
}

// ---------------------------------------------------------------- UI helpers

function setConnection(kind, text) {
  el.conn.dataset.state = kind;
  el.connText.textContent = text;
  updateButtons();
}

function updateButtons() {
  const open = state.ws !== null && state.ws.readyState === WebSocket.OPEN && state.sessionId !== null;
  el.send.disabled = !open || state.phase !== "idle";
  el.cancel.disabled = !open || state.phase === "idle";
}

function showError(message) {
  el.error.textContent = message;
  el.error.hidden = false;
}

function clearError() {
  el.error.hidden = true;
  el.error.textContent = "";
}

function nearBottom() {
  return el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 48;
}

function scrollToEnd(force) {
  if (force || nearBottom()) el.log.scrollTop = el.log.scrollHeight;
}

function addMessage(role, text) {
  const stick = nearBottom();
  const li = document.createElement("li");
  li.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  el.log.append(li);
  scrollToEnd(stick);
  return li;
}

function setMessageStatus(li, status, note) {
  li.dataset.status = status;
  let tag = li.querySelector(".status");
  if (status === "completed" && !note) {
    tag?.remove();
    return;
  }
  if (!tag) {
    tag = document.createElement("span");
    tag.className = "status";
    li.append(tag);
  }
  tag.textContent = note ?? status;
}

function formatNumber(value) {
  return typeof value === "number" ? value.toLocaleString("en-US") : String(value);
}

/**
 * The gateway reports cache settings in session.sinkstream (session.created/updated) and cache
 * statistics in response.usage.sinkstream (response.done), with `_tokens` suffixes; map both onto
 * the panel's names.
 */
function normalizeStats(src) {
  if (!src || typeof src !== "object") return null;
  return {
    policy: src.policy,
    sinks: src.sinks,
    window: src.window,
    cached: src.cached_tokens ?? src.cached,
    evicted: src.evicted_tokens ?? src.evicted,
    seen: src.seen_tokens ?? src.seen,
  };
}

function showStats(stats) {
  if (!stats) return;
  for (const name of STAT_NAMES) {
    if (stats[name] === undefined || stats[name] === null) continue;
    const dd = document.querySelector(`[data-stat="${name}"]`);
    if (dd) dd.textContent = formatNumber(stats[name]);
  }
}

function showUsage(usage) {
  if (!usage) return;
  const dd = document.querySelector('[data-stat="usage"]');
  const inTok = usage.input_tokens ?? "?";
  const outTok = usage.output_tokens ?? "?";
  dd.textContent = `${formatNumber(inTok)} in / ${formatNumber(outTok)} out`;
}

// ---------------------------------------------------------------- protocol

function nextEventId() {
  state.eventSeq += 1;
  return `evt_web_${state.eventSeq}`;
}

function sendEvent(event) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify({ event_id: nextEventId(), ...event }));
  return true;
}

function sendSessionUpdate() {
  const s = currentSettings();
  const session = {};
  if (s.maxTokens !== null) session.max_output_tokens = s.maxTokens;
  if (s.instructions.trim() !== "") session.instructions = s.instructions;
  if (Object.keys(session).length > 0) sendEvent({ type: "session.update", session });
}

function realtimeUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(`${scheme}//${location.host}${REALTIME_PATH}`);
  // After a dropped connection, ask for the same session back: its cache lives on for a while.
  if (state.resumeId && state.resumeToken) {
    url.searchParams.set("session_id", state.resumeId);
    url.searchParams.set("resume_token", state.resumeToken);
  }
  return url.toString();
}

function connect() {
  clearTimeout(state.reconnectTimer);
  if (state.ws) {
    const old = state.ws;
    state.ws = null;
    old.close(1000, "reconnect");
  }
  state.sessionId = null;
  resetResponse("disconnected");
  const { apiKey } = currentSettings();
  const protocols = ["realtime"];
  // Browsers can't set headers on a WebSocket: the key travels as a subprotocol, as in OpenAI's API.
  if (apiKey) protocols.push(`openai-insecure-api-key.${apiKey}`);
  const connId = ++state.connId;
  let ws;
  try {
    ws = new WebSocket(realtimeUrl(), protocols);
  } catch (err) {
    showError(`Cannot connect: ${err instanceof Error ? err.message : String(err)}`);
    setConnection("closed", "Disconnected");
    return;
  }
  state.ws = ws;
  setConnection("connecting", "Connecting…");
  ws.addEventListener("open", () => {
    if (connId !== state.connId) return;
    setConnection("connecting", "Connected, waiting for session…");
  });
  ws.addEventListener("message", (ev) => {
    if (connId !== state.connId) return;
    let event;
    try {
      event = JSON.parse(typeof ev.data === "string" ? ev.data : "");
    } catch {
      showError("The server sent a frame that is not JSON.");
      return;
    }
    handleEvent(event);
  });
  let opened = false;
  ws.addEventListener("open", () => (opened = true));
  ws.addEventListener("close", (ev) => {
    if (connId !== state.connId) return;
    state.ws = null;
    const hadSession = state.sessionId !== null;
    state.sessionId = null;
    resetResponse("disconnected");
    const why = ev.reason ? `: ${ev.reason}` : "";
    if (ev.code === 4404) {
      // The session we tried to resume has expired: start a new one straight away.
      state.resumeId = null;
      state.resumeToken = null;
      showError("The previous session has expired; started a new one (the cache starts empty).");
      connect();
      return;
    }
    if (ev.code === 4409 || ev.code === 1008) {
      // In use from another tab, or refused by policy: retrying would not help.
      setConnection("closed", `Disconnected (${ev.code}${why})`);
      showError(`Connection closed by the server (${ev.code}${why}). Apply the settings to try again.`);
      return;
    }
    if (!opened) {
      // The upgrade itself failed: gateway down, or the API key / origin was refused (HTTP 401/403).
      showError("Cannot open a session: the gateway is unreachable or refused the API key. Retrying…");
    } else if (hadSession && ev.code !== 1000) {
      showError(`Connection lost (${ev.code}${why}); reconnecting to the same session…`);
    }
    const delay = state.reconnectDelay;
    state.reconnectDelay = Math.min(delay * 2, 10_000);
    setConnection("closed", `Disconnected; retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    state.reconnectTimer = setTimeout(connect, delay);
  });
}

function resetResponse(status) {
  if (state.current) {
    setMessageStatus(state.current, status === "disconnected" ? "failed" : status);
  }
  state.current = null;
  state.responseId = null;
  state.phase = "idle";
  el.log.setAttribute("aria-busy", "false");
  updateButtons();
}

function ensureCurrent() {
  if (!state.current) {
    state.current = addMessage("assistant", "");
    setMessageStatus(state.current, "in_progress", "generating…");
    el.log.setAttribute("aria-busy", "true");
  }
  return state.current;
}

function handleEvent(event) {
  switch (event.type) {
    case "session.created": {
      const session = event.session ?? {};
      state.sessionId = session.id ?? "?";
      state.resumeId = session.sinkstream?.session_id ?? session.id ?? null;
      state.resumeToken = session.sinkstream?.resume_token ?? null;
      state.reconnectDelay = 500;
      el.sessionId.textContent = state.sessionId;
      showStats(normalizeStats(session.sinkstream));
      setConnection("open", "Connected");
      clearError();
      sendSessionUpdate();
      break;
    }
    case "session.updated": {
      const session = event.session ?? {};
      showStats(normalizeStats(session.sinkstream));
      break;
    }
    case "response.created": {
      state.phase = "streaming";
      state.responseId = event.response?.id ?? null;
      ensureCurrent();
      updateButtons();
      break;
    }
    case "response.output_text.delta": {
      if (typeof event.delta !== "string") break;
      const stick = nearBottom();
      const li = ensureCurrent();
      li.querySelector(".text").textContent += event.delta;
      scrollToEnd(stick);
      break;
    }
    case "response.output_text.done": {
      if (state.current && typeof event.text === "string") {
        state.current.querySelector(".text").textContent = event.text;
      }
      break;
    }
    case "response.done": {
      const response = event.response ?? {};
      const status = response.status ?? "completed";
      const li = ensureCurrent();
      const details = response.status_details ?? {};
      const reason = details.reason ?? details.error?.message;
      const note = status === "completed" ? null : reason ? `${status} (${reason})` : status;
      setMessageStatus(li, status, note);
      showUsage(response.usage);
      showStats(normalizeStats(response.usage?.sinkstream));
      state.current = null;
      state.responseId = null;
      state.phase = "idle";
      el.log.setAttribute("aria-busy", "false");
      updateButtons();
      if (status === "completed") el.input.focus();
      break;
    }
    case "error": {
      const err = event.error ?? {};
      // A cancel that lost the race with the end of the response: nothing went wrong.
      if (err.code === "response_cancel_not_active") break;
      const where = err.event_id ? ` (event ${err.event_id})` : "";
      showError(`${err.type ?? "error"}: ${err.message ?? "unknown error"}${where}`);
      // A response.create that the server refused produces no response.created/done.
      if (state.phase === "requested") resetResponse("failed");
      break;
    }
    default:
      // conversation.item.created/added, response.output_item.*, rate limits…: nothing to show.
      break;
  }
}

// ---------------------------------------------------------------- actions

function submitMessage() {
  const text = el.input.value;
  if (text.trim() === "" || state.phase !== "idle") return;
  clearError();
  const item = { type: "message", role: "user", content: [{ type: "input_text", text }] };
  if (!sendEvent({ type: "conversation.item.create", item })) {
    showError("Not connected.");
    return;
  }
  addMessage("user", text);
  scrollToEnd(true);
  el.input.value = "";
  state.phase = "requested";
  sendEvent({ type: "response.create" });
  updateButtons();
}

el.composer.addEventListener("submit", (ev) => {
  ev.preventDefault();
  submitMessage();
});

el.input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    submitMessage();
  }
});

el.cancel.addEventListener("click", () => {
  if (state.phase === "idle") return;
  sendEvent({ type: "response.cancel", ...(state.responseId ? { response_id: state.responseId } : {}) });
  if (state.current) setMessageStatus(state.current, "in_progress", "cancelling…");
  el.cancel.disabled = true;
});

el.settings.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const before = savedSettings();
  const s = currentSettings();
  saveSettings(s);
  const open = state.ws !== null && state.ws.readyState === WebSocket.OPEN && state.sessionId !== null;
  if (open && (before.apiKey ?? "") === s.apiKey) {
    sendSessionUpdate();
  } else {
    state.reconnectDelay = 500;
    state.resumeId = null;
    state.resumeToken = null;
    connect();
  }
});

loadSettings();
connect();
