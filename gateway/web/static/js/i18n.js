// The nurse view in English and Chinese (as the mother's page): one table of strings per
// language, the language chosen on the page (kept in the browser under the same key as the
// mother's page) or else the browser's.
//
//   tr("key", ...args)   a string (a function entry is called with args), English if the
//                        current language lacks it, the key itself if no language has it
//   addStrings({ en: {...}, zh: {...} })   another module's strings
//   onLanguage(fn)       fn() after every switch (modules redraw what they wrote)
//   locale()             "zh-CN" or "en-GB", for toLocale*String and Intl
//   untranslated(keys)   the keys one language lacks (a test asks for none)
//   strings(lang)        a copy of one language's table
//
// Static text in index.html carries data-i18n="key" (its text), data-i18n-label (aria-label)
// or data-i18n-title (title); applyStatic() fills them.

const KEY = "perimon-lang";
const STRINGS = { en: {}, zh: {} };
const listeners = [];
let current = "en";

export const lang = () => current;
export const locale = () => (current === "zh" ? "zh-CN" : "en-GB");

export function addStrings(table) {
  for (const l of Object.keys(STRINGS)) Object.assign(STRINGS[l], table[l] || {});
}

export function tr(key, ...args) {
  const v = STRINGS[current][key] ?? STRINGS.en[key];
  if (v == null) return key;
  return typeof v === "function" ? v(...args) : v;
}

export function onLanguage(fn) { listeners.push(fn); }

// Keys one language has and another lacks, with `keys` (say the page's data-i18n) that
// either lacks: what a translation still needs.
export function untranslated(keys = []) {
  const all = new Set([...keys, ...Object.values(STRINGS).flatMap((table) => Object.keys(table))]);
  return [...all].filter((k) => Object.values(STRINGS).some((table) => !(k in table))).sort();
}

// A copy of one language's table ("en", "zh"): what a check of the page looks for.
export const strings = (l) => ({ ...STRINGS[l] });

export function applyStatic(root = document) {
  for (const e of root.querySelectorAll("[data-i18n]")) e.textContent = tr(e.dataset.i18n);
  for (const e of root.querySelectorAll("[data-i18n-label]")) e.setAttribute("aria-label", tr(e.dataset.i18nLabel));
  for (const e of root.querySelectorAll("[data-i18n-title]")) e.title = tr(e.dataset.i18nTitle);
}

export function setLang(l, remember = true) {
  current = l === "zh" ? "zh" : "en";
  if (remember) {
    try { localStorage.setItem(KEY, current); } catch { /* storage refused: this page only */ }
  }
  document.documentElement.lang = locale() === "zh-CN" ? "zh-CN" : "en";
  applyStatic();
  for (const fn of listeners) fn();
}

// The saved choice, else the browser's first language that is one of ours.
export function initialLang() {
  let saved = null;
  try { saved = localStorage.getItem(KEY); } catch { /* storage refused */ }
  if (saved === "zh" || saved === "en") return saved;
  for (const l of navigator.languages || [navigator.language || "en"]) {
    if (/^zh\b/i.test(l)) return "zh";
    if (/^en\b/i.test(l)) return "en";
  }
  return "en";
}

// "3 min ago" / "3分钟前", from seconds since the epoch.
export function ago(sec) {
  const d = Math.max(0, Date.now() / 1000 - sec);
  const f = new Intl.RelativeTimeFormat(locale(), { numeric: "always", style: "short" });
  if (d < 60) return f.format(-Math.round(d), "second");
  if (d < 3600) return f.format(-Math.round(d / 60), "minute");
  return f.format(-Number((d / 3600).toFixed(1)), "hour");
}

export const clock = (sec) => new Date(sec * 1000).toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit", hour12: false });

// The page's own strings (index.html and the modules of the page's frame: alerts, devices,
// settings, live state).
addStrings({
  en: {
    page_title: "perimon nurse view",
    lang_toggle: "中文", lang_toggle_label: "中文 (switch the page to Chinese)",
    pair: "Pair a new monitor", logout: "Log out", gateway: (id) => `gateway ${id}`,
    live_title: "live connection to the gateway", connecting: "connecting…", live: "live",
    not_live: "not live: reconnecting", gateway_stopping: "gateway stopped: reconnecting",
    devices: "Devices", devices_label: "devices",
    no_devices: "No device has connected to this gateway yet.",
    pick: "Choose a device.",
    fhr: "FHR", maternal: "Maternal", paper_speed: "Paper speed", showing: "Showing",
    legend_fhr: "FHR", legend_mhr: "maternal", acceleration: "▲ acceleration", deceleration: "▼ deceleration",
    gaps: "Gaps are times without a trustworthy heart rate (signal loss, movement, or the mother's " +
      "pulse) and points the CTG analysis rejects as artefact (a jump that does not last, a doubled or " +
      "halved rate); they are never filled in.",
    sessions: "Recording sessions", mother_link: "Mother's page (give this link to the mother):",
    mother_qr: "QR code of the mother's page link",
    no_help_phone: "The mother's page has no hospital number to call (the gateway's [web] help_phone is not " +
      "set): it tells her to call the maternity unit or the emergency number.",
    last_tcb: "Last TcB",
    baby_missing: "Set the baby's birth time and gestational age below to place readings on the " +
      "nomogram and against the phototherapy line.",
    nomogram_key: "Shaded: Bhutani 1999 risk zones (40th, 75th, 95th percentile). Blue line: AAP 2022 " +
      "phototherapy threshold for this baby; dark red dashed: exchange transfusion threshold. Bars: " +
      "the reading's 95% interval.",
    th_time: "Time", th_age: "Age", th_tcb: "TcB", th_zone: "Zone", th_to_photo: "To phototherapy", th_advice: "Advice",
    assignment: "Assignment (kept on this gateway only)", bed_label: "Bed or visit label",
    ctg_analysis: "CTG analysis", antenatal: "antenatal (Dawes-Redman)", intrapartum: "intrapartum (FIGO 2015)",
    birth_time: "Birth time", gestation: "Gestation (weeks)", risk_factors: "neurotoxicity risk factors",
    save: "Save", saved: "Saved.",
    set_by_hospital: (list) => `Set by the hospital: ${list}`,
    risk_colour_setting: (c) => `pregnancy risk colour: ${c}`,
    measure_every: (n) => `measure every ${n} min`,
    alerts: "Alerts", alerts_label: "alerts", no_alerts: "No alerts in the last 24 hours.",
    when_live: "live", when_ago: (h) => `${h} h ago`,
  },
  zh: {
    page_title: "perimon 护士站",
    lang_toggle: "English", lang_toggle_label: "English (切换为英文)",
    pair: "配对新的监护仪", logout: "退出登录", gateway: (id) => `网关 ${id}`,
    live_title: "与网关的实时连接", connecting: "正在连接…", live: "实时",
    not_live: "未连接：正在重新连接", gateway_stopping: "网关已停止：正在重新连接",
    devices: "设备", devices_label: "设备",
    no_devices: "还没有设备连接到这个网关。",
    pick: "请选择一台设备。",
    fhr: "胎心率", maternal: "母体心率", paper_speed: "走纸速度", showing: "显示",
    legend_fhr: "胎心率", legend_mhr: "母体心率", acceleration: "▲ 加速", deceleration: "▼ 减速",
    gaps: "空白处是没有可信心率的时段（信号丢失、胎动或记录到母体脉搏），以及 CTG 分析判为伪差的点" +
      "（短暂跳变、心率加倍或减半）；这些空白从不填补。",
    sessions: "监护记录", mother_link: "孕妇页面（请把此链接交给孕妇）：",
    mother_qr: "孕妇页面链接的二维码",
    no_help_phone: "孕妇页面上没有可拨打的医院电话（网关未设置 [web] help_phone）：页面只提示她联系产科或拨打急救电话。",
    last_tcb: "最近一次经皮胆红素",
    baby_missing: "请在下方填写新生儿的出生时间和胎龄，以便在列线图上标出读数并与光疗线比较。",
    nomogram_key: "阴影：Bhutani 1999 风险区（第 40、75、95 百分位）。蓝线：本新生儿的 AAP 2022 光疗阈值；" +
      "深红虚线：换血阈值。竖线：读数的 95% 区间。",
    th_time: "时间", th_age: "日龄", th_tcb: "经皮胆红素", th_zone: "风险区", th_to_photo: "距光疗线", th_advice: "建议",
    assignment: "分配（仅保存在本网关）", bed_label: "床号或就诊标签",
    ctg_analysis: "CTG 分析", antenatal: "产前（Dawes-Redman）", intrapartum: "产时（FIGO 2015）",
    birth_time: "出生时间", gestation: "胎龄（周）", risk_factors: "有神经毒性危险因素",
    save: "保存", saved: "已保存。",
    set_by_hospital: (list) => `由医院设置：${list}`,
    risk_colour_setting: (c) => `妊娠风险颜色：${c}`,
    measure_every: (n) => `每 ${n} 分钟测量一次`,
    alerts: "警报", alerts_label: "警报", no_alerts: "过去 24 小时内没有警报。",
    when_live: "实时", when_ago: (h) => `${h} 小时前`,
  },
});
