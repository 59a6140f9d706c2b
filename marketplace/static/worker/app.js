// The worker page: sign in with a worker key, lease a task, answer its items, submit or skip.
// Everything goes through the public API (api.js); the server checks every answer.
import { widgetFor } from "./answers/index.js";
import { ApiError, call, NetworkError, newIdempotencyKey, storedKey } from "./api.js";
import { messages } from "./dom.js";

const $ = (id) => document.getElementById(id);
const NO_WORK_DELAYS = [5, 10, 20, 40, 60]; // seconds between checks while there is no work
const SUBMIT_RETRIES = 5;

const page = {
  currency: "USD",
  task: null, // {raw, items, answers, errors, index, key, deadline, widget}
  noWork: { timer: null, attempt: 0 },
  clock: null,
};

// ---------- signing in ----------

async function signIn(key) {
  $("sign-in-error").textContent = "";
  let me;
  try {
    me = (await call("GET", "/v1/me", { key, retries: 2 })).body;
  } catch (error) {
    $("sign-in-error").textContent =
      error instanceof ApiError && error.status === 401 ? "That key was not accepted. Check it and try again." : error.message;
    return false;
  }
  if (me.role !== "worker") {
    $("sign-in-error").textContent = `That key belongs to a ${me.role}; this page needs a worker key.`;
    return false;
  }
  storedKey.set(key);
  showMe(me);
  $("sign-in").hidden = true;
  $("me").hidden = false;
  $("work").hidden = false;
  $("sign-out").hidden = false;
  status(`Signed in as ${me.name}. Press Next task to start.`);
  $("next-task").focus();
  return true;
}

function signOut(reason = "") {
  storedKey.clear();
  stopWaiting();
  endTask();
  $("sign-in").hidden = false;
  $("me").hidden = true;
  $("work").hidden = true;
  $("sign-out").hidden = true;
  $("worker-key").value = "";
  $("sign-in-error").textContent = typeof reason === "string" ? reason : "";
  $("worker-key").focus();
}

const KEY_REFUSED = "The server no longer accepts your key. Sign in again.";

// ---------- the account panel ----------

function money(cents) {
  return `${(cents / 100).toFixed(2)} ${page.currency}`;
}

function showMe(me) {
  page.currency = me.currency || page.currency;
  const balance = me.balance_cents || 0;
  const paid = me.paid_out_cents || 0;
  $("me-earned").textContent = money(balance + paid);
  $("me-paid").textContent = money(paid);
  $("me-pending").textContent = money(balance);
  const checks = me.checks || {};
  $("me-accuracy").textContent =
    checks.accuracy == null
      ? `not scored yet (from ${checks.min_count || 20} checked answers, a day old)`
      : `${Math.round(100 * checks.accuracy)}% of ${checks.checked}, to ${String(checks.as_of).slice(0, 10)}`;
}

async function refreshMe() {
  try {
    showMe((await call("GET", "/v1/me", { retries: 2 })).body);
  } catch {
    // the panel keeps its last figures
  }
}

// ---------- status line ----------

function status(text) {
  $("status").textContent = text;
}

// ---------- leasing ----------

function stopWaiting() {
  clearTimeout(page.noWork.timer);
  page.noWork.timer = null;
}

async function nextTask() {
  stopWaiting();
  if (page.task) return;
  $("next-task").disabled = true;
  status("Looking for a task…");
  let answer;
  try {
    // With an Idempotency-Key, a lease whose answer is lost is asked again and the server hands
    // back the task it leased (else that task sits leased to nobody until its deadline).
    answer = await call("POST", "/v1/assignments", {
      idempotencyKey: newIdempotencyKey(),
      retries: 2,
      onRetry: (n, delay) => status(`The server did not answer; asking again in ${delay} s…`),
    });
  } catch (error) {
    $("next-task").disabled = false;
    if (error instanceof ApiError && error.status === 401) return signOut(KEY_REFUSED);
    if (error instanceof ApiError && error.status === 403) {
      status(`This account cannot take work now. ${error.message}`);
      return;
    }
    status(error.message);
    return;
  }
  $("next-task").disabled = false;
  if (answer.status === 204) return waitForWork();
  page.noWork.attempt = 0;
  startTask(answer.body, answer.date);
}

function waitForWork() {
  const delay = NO_WORK_DELAYS[Math.min(page.noWork.attempt, NO_WORK_DELAYS.length - 1)];
  page.noWork.attempt += 1;
  status(`No work for you right now. Checking again in ${delay} s (or press Next task).`);
  page.noWork.timer = setTimeout(nextTask, delay * 1000);
}

// ---------- a task ----------

function payText(raw) {
  // What the lease says the task pays, when it says: a `pay` object or `*_cents` fields.
  const source = raw.pay && typeof raw.pay === "object" ? raw.pay : raw;
  const parts = Object.entries(source)
    .filter(([name, value]) => name.endsWith("_cents") && name !== "paid_cents" && Number.isInteger(value))
    .map(([name, value]) => `${name.slice(0, -6).replaceAll("_", " ")} ${money(value)}`);
  return parts.length ? `Pays: ${parts.join(", ")}` : "";
}

function startTask(raw, serverNow) {
  const type = raw.job.annotation.type;
  if (!widgetFor(type)) {
    status(`This task is of a type this page cannot show (${type}); it was given back.`);
    call("POST", `/v1/assignments/${raw.id}/skip`).catch(() => {});
    return;
  }
  // The server's clock decides: its Date has whole seconds, so count one second less.
  const left = Date.parse(raw.expires_at) - serverNow - 1000;
  page.task = {
    raw,
    items: raw.items,
    answers: raw.items.map(() => undefined),
    errors: raw.items.map(() => null),
    index: 0,
    key: null,
    deadline: performance.now() + left,
    widget: null,
  };
  $("task-title").textContent = raw.kind === "qualification" ? `${raw.job.title} (qualification test)` : raw.job.title;
  $("task-instructions").textContent = raw.job.instructions || "";
  $("task-pay").textContent = payText(raw);
  $("task-error").textContent = "";
  $("submit").disabled = false;
  $("skip").disabled = false;
  $("task").hidden = false;
  $("next-task").hidden = true;
  status(`Task ${raw.id}: ${raw.items.length} item${raw.items.length === 1 ? "" : "s"}.`);
  tick();
  page.clock = setInterval(tick, 250);
  showItem(0);
  $("task-title").focus();
}

function endTask() {
  clearInterval(page.clock);
  page.clock = null;
  if (page.task && page.task.widget) page.task.widget.destroy();
  page.task = null;
  $("task").hidden = true;
  $("next-task").hidden = false;
  $("item").replaceChildren();
}

function tick() {
  const task = page.task;
  if (!task) return;
  const left = Math.max(0, Math.floor((task.deadline - performance.now()) / 1000));
  const clock = $("time-left");
  clock.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  clock.classList.toggle("short", left < 60);
  if (left <= 0 && !task.sending) {
    endTask();
    status("The time for that task ran out: its answers can no longer be sent. Press Next task for another.");
    $("next-task").focus();
  }
}

function showItem(index) {
  const task = page.task;
  if (task.widget) task.widget.destroy();
  task.index = index;
  const item = task.items[index];
  const container = $("item");
  container.replaceChildren();
  const problems = task.errors[index];
  $("item-error").textContent = problems ? problems.item.join("; ") : "";
  task.widget = widgetFor(task.raw.job.annotation.type)({
    container,
    item,
    number: index + 1,
    annotation: task.raw.job.annotation,
    answer: task.answers[index],
    errors: problems,
    setAnswer(answer) {
      task.answers[index] = answer;
      updatePosition();
    },
    answered() {
      const next = task.answers.findIndex((a, i) => a === undefined && i > index);
      const anyLeft = task.answers.findIndex((a) => a === undefined);
      if (next >= 0) showItem(next);
      else if (anyLeft >= 0) showItem(anyLeft);
      else $("submit").focus();
    },
  });
  updatePosition();
}

function updatePosition() {
  const task = page.task;
  if (!task) return;
  const done = task.answers.filter((a) => a !== undefined).length;
  $("item-position").textContent = `Item ${task.index + 1} of ${task.items.length} · ${done} answered`;
  $("previous-item").disabled = task.index === 0;
  $("next-item").disabled = task.index === task.items.length - 1;
}

// ---------- submitting ----------

function mapErrors(error) {
  // {"json": {"answers": {"2": {"label": [...]}}}} -> the message beside item 3 (and its objects).
  const task = page.task;
  task.errors = task.items.map(() => null);
  const perAnswer = error.errors && error.errors.json && error.errors.json.answers;
  let placed = false;
  if (perAnswer && typeof perAnswer === "object" && !Array.isArray(perAnswer)) {
    for (const [position, problems] of Object.entries(perAnswer)) {
      const index = Number(position);
      if (!Number.isInteger(index) || !task.items[index]) continue;
      const objects = {};
      for (const [j, objectProblems] of Object.entries((problems && problems.objects) || {})) objects[Number(j)] = messages(objectProblems);
      const rest = { ...problems };
      delete rest.objects;
      task.errors[index] = { item: messages(rest).concat(Object.keys(objects).length ? ["see the objects marked in red"] : []), objects };
      placed = true;
    }
  }
  return placed;
}

async function submit() {
  const task = page.task;
  if (!task) return;
  const missing = task.answers.findIndex((a) => a === undefined);
  if (missing >= 0) {
    $("task-error").textContent = `Item ${missing + 1} has no answer yet.`;
    showItem(missing);
    return;
  }
  const body = { answers: task.items.map((item, i) => ({ item_id: item.id, ...task.answers[i] })) };
  task.key = task.key || newIdempotencyKey(); // the same key on every retry of these answers
  $("submit").disabled = true;
  $("skip").disabled = true;
  $("task-error").textContent = "";
  status("Sending your answers…");
  task.sending = true; // a submit that left in time counts, even if the clock runs out meanwhile
  try {
    await call("POST", `/v1/assignments/${task.raw.id}/submit`, {
      body,
      idempotencyKey: task.key,
      retries: SUBMIT_RETRIES,
      onRetry: (attempt, delay) => status(`Network trouble; sending again in ${delay} s (try ${attempt + 1})…`),
    });
  } catch (error) {
    task.sending = false;
    $("submit").disabled = false;
    $("skip").disabled = false;
    if (error instanceof NetworkError) {
      status("");
      $("task-error").textContent = "Your answers could not be sent (no connection). They are kept: press Submit to try again.";
      return;
    }
    if (error instanceof ApiError && error.status === 422) {
      task.key = null; // refused: nothing was stored, corrected answers get a new key
      const placed = mapErrors(error);
      $("task-error").textContent = placed ? `Not accepted: ${error.message}` : `Not accepted: ${[error.message, ...messages(error.errors)].join("; ")}`;
      status("");
      const first = task.errors.findIndex((e) => e);
      showItem(first >= 0 ? first : task.index);
      return;
    }
    if (error instanceof ApiError && error.status === 401) return signOut(KEY_REFUSED);
    status("");
    endTask();
    $("task-error").textContent = "";
    status(`This task cannot be submitted: ${error.message}`);
    return;
  }
  endTask();
  status("Submitted. Thank you! Looking for the next task…");
  refreshMe();
  nextTask();
}

async function skip() {
  const task = page.task;
  if (!task) return;
  $("submit").disabled = true;
  $("skip").disabled = true;
  try {
    await call("POST", `/v1/assignments/${task.raw.id}/skip`, { retries: 2 });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) {
      $("submit").disabled = false;
      $("skip").disabled = false;
      $("task-error").textContent = `Could not give the task back: ${error.message}`;
      return;
    }
  }
  endTask();
  status("Task given back.");
  nextTask();
}

// ---------- wiring ----------

function onKey(event) {
  if (!page.task || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  if (target && (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName))) return;
  if (/^[1-9]$/.test(event.key) && page.task.widget && page.task.widget.onDigit(Number(event.key))) event.preventDefault();
}

function start() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("worker-key").value.trim();
    $("worker-key").value = "";
    if (key) signIn(key);
    else $("sign-in-error").textContent = "Paste your worker key first.";
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("next-task").addEventListener("click", nextTask);
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("previous-item").addEventListener("click", () => page.task && showItem(page.task.index - 1));
  $("next-item").addEventListener("click", () => page.task && showItem(page.task.index + 1));
  document.addEventListener("keydown", onKey);
  const key = storedKey.get();
  if (key) signIn(key);
  else $("worker-key").focus();
}

start();
