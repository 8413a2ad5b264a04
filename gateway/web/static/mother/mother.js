// The mother's page (docs/home.md): every string in both languages in one table.
"use strict";

const POLL_MS = 5000; // the page asks the home box for news this often
const FETCH_TIMEOUT_MS = 8000; // a request not answered by then has failed
// No answer for this long (three polls): the page says it cannot reach the box and stops
// showing what it last heard as if it were now.
const STALE_MS = 15000;

const T = {
  en: {
    title: "My recordings",
    toggle: "中文",
    updated: (t) => `Updated ${t}`,
    connecting: "Connecting to the home box…",
    stale_title: "Can't reach the home box: recording may have stopped",
    stale_text: (t) => t ? `This page last heard from it at ${t}. Check that the box is plugged in and switched on, and that this phone is on the home Wi-Fi.`
                         : "Check that the box is plugged in and switched on, and that this phone is on the home Wi-Fi.",
    invalid_title: "This link does not work",
    invalid_text: "It may have been replaced by a new one. Ask the hospital for a new link.",
    today: "Today's session",
    recording: "Recording",
    not_recording: "Not recording",
    unknown: "Not known: no news from the home box",
    done_one: "Today's session done",
    done_all: "Today's sessions done",
    done_hint: "Well done. You can take the probe off.",
    done_some: (a, b) => `Today: ${a} of ${b} sessions done`,
    none_today: "No session is prescribed today",
    as_of: (t) => `As at ${t}`,
    of_minutes: (a, b) => `${a} of ${b} minutes`,
    minutes: (a) => `${a} minutes`,
    heart_minutes: "Only minutes in which the baby's heart is picked up count.",
    movements: (n) => n ? `Felt the baby move? Press the monitor's button briefly. Marked so far: ${n}`
                        : "Felt the baby move? Press the monitor's button briefly: it chirps, and the hospital sees the mark.",
    min_short: (a) => `${a} min`,
    signal_good: "Signal good: the baby's heart is being picked up",
    signal_weak: "Move the probe a little",
    signal_off_skin: "Place the probe on your belly",
    signal_no_finger: "Put your finger back in the finger sensor: the baby's heart rate cannot be shown without it",
    signal_none: "Looking for the baby's heart…",
    signal_no_data: "Nothing is coming from the monitor: keep it switched on and near the home box",
    connected: "The monitor is connected",
    disconnected: "The monitor is not connected: switch it on and keep it near the home box",
    disconnected_idle: "The monitor is not connected",
    next: "Next session",
    no_schedule: "The hospital has not set a schedule",
    per_day: (n, d) => `${n} time${n > 1 ? "s" : ""} a day, ${d} minutes each`,
    per_week: (n, d) => `${n} time${n > 1 ? "s" : ""} a week, ${d} minutes each`,
    due_now: (t) => `A session is due now (${t}): please start recording`,
    missed: (t) => `The session due ${t} was not recorded. Record one when you can.`,
    history: "Sessions recorded",
    all_sent_yes: "All delivered to the hospital: yes",
    all_sent_no: "All delivered to the hospital: not yet",
    sent_yes: "delivered: yes",
    sent_no: "delivered: not yet",
    st_complete: "complete",
    st_short: "stopped early",
    st_ended: "recorded",
    st_missed: "missed",
    no_history: "No sessions yet.",
    help_title: "Less movement, pain or bleeding?",
    help_text: "If you feel the baby moving less than usual, or you have pain or bleeding, do not wait for a recording: call the hospital now.",
    call: (n) => `Call ${n}`,
    who_to_call: "Call the maternity unit where you are booked, or your emergency number.",
  },
  zh: {
    title: "我的胎心监护",
    toggle: "English",
    updated: (t) => `更新于 ${t}`,
    connecting: "正在连接家中的网关盒…",
    stale_title: "无法连接家中的网关盒：记录可能已停止",
    stale_text: (t) => t ? `本页面最后一次收到它的消息是在 ${t}。请检查网关盒是否插好电源并已开机，手机是否连着家里的 Wi-Fi。`
                         : "请检查网关盒是否插好电源并已开机，手机是否连着家里的 Wi-Fi。",
    invalid_title: "此链接无效",
    invalid_text: "它可能已被新的链接替换。请向医院索取新的链接。",
    today: "今天的监护",
    recording: "正在记录",
    not_recording: "未在记录",
    unknown: "未知：没有收到网关盒的消息",
    done_one: "今天的监护已完成",
    done_all: "今天的监护已全部完成",
    done_hint: "做得好，可以取下探头了。",
    done_some: (a, b) => `今天已完成 ${a} / ${b} 次`,
    none_today: "今天没有安排监护",
    as_of: (t) => `截至 ${t}`,
    of_minutes: (a, b) => `已记录 ${a} / ${b} 分钟`,
    minutes: (a) => `已记录 ${a} 分钟`,
    heart_minutes: "只计算收到宝宝心跳的分钟。",
    movements: (n) => n ? `感到胎动时，请短按一下监护仪的按钮。已标记：${n} 次`
                        : "感到胎动时，请短按一下监护仪的按钮：它会发出提示音，医院能看到标记。",
    min_short: (a) => `${a} 分钟`,
    signal_good: "信号良好：正在收到宝宝的心跳",
    signal_weak: "请把探头稍微移动一下",
    signal_off_skin: "请把探头贴在腹部",
    signal_no_finger: "请把手指放回手指传感器：没有它，无法显示宝宝的心率",
    signal_none: "正在寻找宝宝的心跳…",
    signal_no_data: "没有收到监护仪的数据：请保持监护仪开机并放在网关盒附近",
    connected: "监护仪已连接",
    disconnected: "监护仪未连接：请打开监护仪并放在网关盒附近",
    disconnected_idle: "监护仪未连接",
    next: "下一次监护",
    no_schedule: "医院还没有安排监护时间",
    per_day: (n, d) => `每天 ${n} 次，每次 ${d} 分钟`,
    per_week: (n, d) => `每周 ${n} 次，每次 ${d} 分钟`,
    due_now: (t) => `现在该做监护了（${t}），请开始记录`,
    missed: (t) => `${t} 的监护没有记录，请尽快补做一次`,
    history: "监护记录",
    all_sent_yes: "全部已送达医院：是",
    all_sent_no: "全部已送达医院：还没有",
    sent_yes: "已送达：是",
    sent_no: "已送达：还没有",
    st_complete: "已完成",
    st_short: "提前结束",
    st_ended: "已记录",
    st_missed: "错过",
    no_history: "还没有监护记录。",
    help_title: "胎动减少、腹痛或出血？",
    help_text: "如果感觉宝宝动得比平时少，或者有腹痛、出血，不要等监护结果，请立即打电话给医院。",
    call: (n) => `拨打 ${n}`,
    who_to_call: "请立即打电话给您建档医院的产科，或拨打急救电话。",
  },
};

const $ = (id) => document.getElementById(id);
const base = location.pathname.replace(/\/$/, "");
const state = {
  lang: null,
  data: null, // the last answer of the home box
  okAt: null, // performance.now() of that answer (a clock the phone's time setting cannot move)
  okDate: null, // and the phone's wall-clock time, to show
  invalid: false, // the box refused the link
  helpPhone: "",
  stale: false, // as last drawn
  timer: null,
  loading: false,
};
const started = performance.now();

function locale() {
  return state.lang === "zh" ? "zh-CN" : "en-GB";
}

function when(iso) {
  return new Date(iso).toLocaleString(locale(), { weekday: "short", month: "short", day: "numeric",
                                                  hour: "2-digit", minute: "2-digit" });
}

function hhmm(date) {
  return date.toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

function isStale() {
  return performance.now() - (state.okAt ?? started) > STALE_MS;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function render() {
  const lang = state.lang || "en";
  const t = T[lang];
  const s = state.data;
  const stale = (state.stale = !state.invalid && isStale());
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t.title;
  for (const el of document.querySelectorAll("[data-t]")) {
    const v = t[el.dataset.t];
    if (typeof v === "string") el.textContent = v;
  }
  $("lang-toggle").textContent = t.toggle;
  $("lang-toggle").lang = lang === "zh" ? "en" : "zh-CN";
  const at = state.okDate ? hhmm(state.okDate) : null;

  show("invalid", state.invalid);
  for (const box of $("invalid").children) {
    const tt = T[box.lang === "zh-CN" ? "zh" : "en"];
    box.querySelector("[data-invalid='title']").textContent = tt.invalid_title;
    box.querySelector("[data-invalid='text']").textContent = tt.invalid_text;
  }
  show("updated", !state.invalid);
  $("updated").textContent = at ? t.updated(at) : t.connecting;
  show("stale", stale);
  $("stale-text").textContent = t.stale_text(at);
  document.body.dataset.stale = String(stale);
  for (const id of ["today", "next", "history"]) show(id, !state.invalid && (s || stale));

  renderHelp(t, state.invalid ? state.helpPhone : s ? s.help_phone : "");
  if (state.invalid) {
    show("reminder", false);
  } else {
    renderToday(t, s, stale, at);
    renderPlan(t, s, stale);
    renderHistory(t, s);
  }
  if (s || stale || state.invalid) document.body.dataset.ready = "1";
}

function renderToday(t, s, stale, at) {
  const r = s ? s.recording : null;
  const today = s ? s.today : null;
  let st = r ? "recording" : "idle";
  if (!r && today && today.prescribed > 0 && today.done >= today.prescribed) st = "done";
  if (stale) st = "unknown"; // never what it last heard as if it were now
  $("today").dataset.state = st;
  $("rec-state").textContent = { recording: t.recording, idle: t.not_recording, unknown: t.unknown,
                                 done: today && today.prescribed > 1 ? t.done_all : t.done_one }[st];
  let progress = "";
  let hint = "";
  if (r) {
    const done = Math.floor(r.heart_rate_min);
    progress = r.prescribed_min ? t.of_minutes(done, r.prescribed_min) : t.minutes(done);
    hint = stale ? t.as_of(at) : t.heart_minutes;
  } else if (st === "done") {
    hint = t.done_hint;
  } else if (today && today.done > 0) {
    progress = t.done_some(today.done, today.prescribed);
  } else if (today && today.prescribed === 0) {
    hint = t.none_today;
  }
  $("rec-progress").textContent = progress;
  $("rec-hint").textContent = hint;
  const moves = r && !stale ? t.movements(r.movements || 0) : "";
  $("movements").textContent = moves;
  show("movements", !!moves);
  const bar = !stale && r && r.prescribed_min;
  show("bar", !!bar);
  if (bar) $("bar-fill").style.width = `${Math.min(100, 100 * r.heart_rate_min / r.prescribed_min)}%`;
  const signal = r && !stale ? r.signal : "";
  $("signal").textContent = signal ? t[`signal_${signal}`] || "" : "";
  $("signal").className = `signal ${signal}`;
  $("signal").dataset.signal = signal;
  // "switch it on" only when she should be recording: not after today's session is done
  const wanted = r || (s && s.plan && s.plan.reminder && s.plan.reminder.kind === "due");
  const link = s && s.connected ? t.connected : wanted ? t.disconnected : t.disconnected_idle;
  $("link-state").textContent = s && !stale ? link : "";
}

function renderPlan(t, s, stale) {
  const p = (s && s.plan) || {};
  const rem = stale ? null : p.reminder; // "due now" from old news could be wrong either way
  show("reminder", !!rem);
  if (rem) {
    $("reminder").className = `card ${rem.kind}`;
    $("reminder").dataset.kind = rem.kind;
    $("reminder-text").textContent = rem.kind === "due" ? t.due_now(when(rem.due)) : t.missed(when(rem.due));
  }
  if (p.schedule) {
    $("next-due").textContent = p.next_due ? when(p.next_due) : "—";
    const sc = p.schedule;
    $("schedule").textContent = sc.sessions_per_day ? t.per_day(sc.sessions_per_day, sc.duration_min)
                                                     : t.per_week(sc.sessions_per_week, sc.duration_min);
  } else {
    $("next-due").textContent = "—";
    $("schedule").textContent = s ? t.no_schedule : "";
  }
}

function renderHistory(t, s) {
  const history = s ? s.history : [];
  const list = $("history-list");
  list.textContent = "";
  for (const h of history) {
    const li = document.createElement("li");
    li.dataset.status = h.status;
    const left = document.createElement("span");
    const label = t[`st_${h.status}`] || h.status;
    left.textContent = h.status === "missed" ? `${when(h.due)} · ${label}`
                                             : `${when(h.start)} · ${t.min_short(h.heart_rate_min)} · ${label}`;
    li.appendChild(left);
    if (h.status !== "missed") {
      const right = document.createElement("span");
      right.className = h.delivered ? "yes" : "no";
      right.textContent = h.delivered ? t.sent_yes : t.sent_no;
      li.appendChild(right);
    }
    list.appendChild(li);
  }
  show("no-history", !!s && history.length === 0);
  $("no-history").textContent = t.no_history;
  const recorded = history.filter((h) => h.status !== "missed");
  show("all-sent", recorded.length > 0);
  $("all-sent").textContent = s && s.all_delivered ? t.all_sent_yes : t.all_sent_no;
  $("all-sent").dataset.delivered = String(!!(s && s.all_delivered));
}

function renderHelp(t, phone) {
  const call = $("call");
  show("call", !!phone);
  show("who-to-call", !phone);
  if (phone) {
    call.textContent = t.call(phone);
    call.href = `tel:${phone.replace(/[^0-9+]/g, "")}`;
  } else {
    call.removeAttribute("href");
    $("who-to-call").textContent = t.who_to_call;
  }
}

async function load() {
  if (state.loading) return;
  state.loading = true;
  const q = state.lang ? `?lang=${state.lang}` : "";
  const abort = new AbortController();
  const timeout = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  try {
    const resp = await fetch(`${base}/state${q}`, { cache: "no-store", signal: abort.signal });
    if (resp.status === 404) {
      const body = await resp.json();
      if (body.error === "unknown link") {
        state.invalid = true;
        state.data = null;
        state.helpPhone = body.help_phone || "";
        if (!state.lang) state.lang = body.lang;
      }
    } else if (resp.ok) {
      state.data = await resp.json();
      state.invalid = false;
      state.okAt = performance.now();
      state.okDate = new Date();
      if (!state.lang) state.lang = state.data.lang;
    }
  } catch (e) {
    /* the box is restarting, switched off or out of reach: the page says so after STALE_MS */
  } finally {
    clearTimeout(timeout);
    state.loading = false;
  }
  render();
  schedule(POLL_MS);
}

function schedule(ms) {
  clearTimeout(state.timer);
  state.timer = setTimeout(load, ms);
}

function main() {
  const saved = localStorage.getItem("perimon-lang");
  if (saved === "zh" || saved === "en") state.lang = saved;
  $("lang-toggle").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("perimon-lang", state.lang);
    render();
  });
  // a phone that wakes up asks at once rather than showing what it heard before it slept
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) load();
  });
  setInterval(() => {
    if ((!state.invalid && isStale()) !== state.stale) render();
  }, 1000);
  load();
}

main();
