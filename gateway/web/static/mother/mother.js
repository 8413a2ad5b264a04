// The mother's page (docs/home.md): every string in both languages in one table.
"use strict";

const T = {
  en: {
    title: "My recordings",
    toggle: "中文",
    today: "Today's session",
    recording: "Recording",
    not_recording: "Not recording",
    of_minutes: (a, b) => `${a} of ${b} minutes`,
    minutes: (a) => `${a} minutes`,
    min_short: (a) => `${a} min`,
    signal_good: "Signal good: the baby's heart is being picked up",
    signal_weak: "Move the probe a little",
    signal_off_skin: "Place the probe on your belly",
    signal_none: "Looking for the baby's heart…",
    connected: "The monitor is connected",
    disconnected: "The monitor is not connected: switch it on and keep it near the gateway",
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
    no_phone: "Call the hospital",
  },
  zh: {
    title: "我的胎心监护",
    toggle: "English",
    today: "今天的监护",
    recording: "正在记录",
    not_recording: "未在记录",
    of_minutes: (a, b) => `已记录 ${a} / ${b} 分钟`,
    minutes: (a) => `已记录 ${a} 分钟`,
    min_short: (a) => `${a} 分钟`,
    signal_good: "信号良好：正在收到宝宝的心跳",
    signal_weak: "请把探头稍微移动一下",
    signal_off_skin: "请把探头贴在腹部",
    signal_none: "正在寻找宝宝的心跳…",
    connected: "监护仪已连接",
    disconnected: "监护仪未连接：请打开监护仪并放在网关附近",
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
    no_phone: "请联系医院",
  },
};

const $ = (id) => document.getElementById(id);
const state = { lang: null, data: null };
const base = location.pathname.replace(/\/$/, "");

function when(iso) {
  const d = new Date(iso);
  const locale = state.lang === "zh" ? "zh-CN" : "en-GB";
  return d.toLocaleString(locale, { weekday: "short", month: "short", day: "numeric",
                                    hour: "2-digit", minute: "2-digit" });
}

function render() {
  const s = state.data;
  if (!s) return;
  const t = T[state.lang];
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t.title;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t[el.dataset.t];
  $("lang-toggle").textContent = t.toggle;

  const r = s.recording;
  $("rec-state").textContent = r ? t.recording : t.not_recording;
  $("today").dataset.state = r ? "recording" : "idle";
  $("bar").hidden = !(r && r.prescribed_min);
  if (r) {
    const done = Math.floor(r.recorded_min);
    $("rec-progress").textContent = r.prescribed_min ? t.of_minutes(done, r.prescribed_min) : t.minutes(done);
    if (r.prescribed_min) $("bar-fill").style.width = `${Math.min(100, 100 * r.recorded_min / r.prescribed_min)}%`;
    $("signal").textContent = t[`signal_${r.signal}`] || "";
    $("signal").className = `signal ${r.signal}`;
    $("signal").dataset.signal = r.signal;
  } else {
    $("rec-progress").textContent = "";
    $("signal").textContent = "";
    $("signal").dataset.signal = "";
  }
  $("link-state").textContent = s.connected ? t.connected : t.disconnected;

  const p = s.plan || {};
  const rem = p.reminder;
  $("reminder").hidden = !rem;
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
    $("schedule").textContent = t.no_schedule;
  }

  const list = $("history-list");
  list.textContent = "";
  for (const h of s.history) {
    const li = document.createElement("li");
    li.dataset.status = h.status;
    const left = document.createElement("span");
    const label = t[`st_${h.status}`] || h.status;
    left.textContent = h.status === "missed" ? `${when(h.due)} · ${label}`
                                             : `${when(h.start)} · ${t.min_short(h.recorded_min)} · ${label}`;
    li.appendChild(left);
    if (h.status !== "missed") {
      const right = document.createElement("span");
      right.className = h.delivered ? "yes" : "no";
      right.textContent = h.delivered ? t.sent_yes : t.sent_no;
      li.appendChild(right);
    }
    list.appendChild(li);
  }
  $("no-history").hidden = s.history.length > 0;
  $("no-history").textContent = t.no_history;
  const recorded = s.history.filter((h) => h.status !== "missed");
  $("all-sent").hidden = recorded.length === 0;
  $("all-sent").textContent = s.all_delivered ? t.all_sent_yes : t.all_sent_no;
  $("all-sent").dataset.delivered = String(s.all_delivered);

  const call = $("call");
  if (s.help_phone) {
    call.textContent = t.call(s.help_phone);
    call.href = `tel:${s.help_phone.replace(/[^0-9+]/g, "")}`;
  } else {
    call.textContent = t.no_phone;
    call.removeAttribute("href");
  }
  document.body.dataset.ready = "1";
}

async function load() {
  const q = state.lang ? `?lang=${state.lang}` : "";
  try {
    const resp = await fetch(`${base}/state${q}`, { cache: "no-store" });
    if (!resp.ok) return;
    state.data = await resp.json();
    if (!state.lang) state.lang = state.data.lang;
    render();
  } catch (e) {
    /* the gateway is restarting: try again at the next poll */
  }
}

function main() {
  const saved = localStorage.getItem("perimon-lang");
  if (saved === "zh" || saved === "en") state.lang = saved;
  $("lang-toggle").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("perimon-lang", state.lang);
    render();
  });
  load();
  setInterval(load, 5000);
}

main();
