// Personal WeChat through the official iLink route (bot/channels/ilink/): who is bound, each person's reply window,
// what could not go out; admins bind a new person with a QR code they scan in WeChat. Only when the channel runs.
import { ApiError, api, attempt, clear, el, field, fmtTime, select, toast } from "./common.js";

const POLLING = { up: "正常", connecting: "连接中", down: "断开" };
const LOGIN = {
  starting: "正在获取二维码…", wait: "请用微信扫描二维码", scaned: "已扫码，请在手机上确认",
  need_verifycode: "请输入手机微信上显示的数字", confirmed: "已绑定", already_bound: "此微信已绑定过，无需重复绑定", failed: "未完成",
};

function table(headers, rows, empty) {
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, empty)))));
}

function loginBox(info, reload) {
  const box = el("div", { id: "ilink-login" });
  const grid = select({ name: "grid_code" }, "不指定（私聊报事会请其到群里反映）", info.grids.map((g) => [g.code, g.name]));
  const button = el("button", { type: "button" }, "生成绑定二维码");
  const show = el("div", { id: "ilink-qr", "aria-live": "polite" });
  let timer = null;

  async function follow(id) {
    let state;
    try {
      state = await api(`/api/v1/channels/ilink/logins/${encodeURIComponent(id)}`);
    } catch (err) {
      clear(show, el("p", { class: "error" }, err.message));
      return;
    }
    render(state);
    const done = ["confirmed", "already_bound", "failed"].includes(state.status);
    if (done) {
      if (state.status === "confirmed") {
        toast(`已绑定：${state.user_id}`);
        await reload();
      }
      return;
    }
    timer = setTimeout(() => follow(id), 2000);
  }

  function render(state) {
    const parts = [el("p", { class: state.status === "failed" ? "error" : "muted", id: "ilink-login-status", dataset: { status: state.status } },
      LOGIN[state.status] || state.status, state.message ? `（${state.message}）` : "")];
    if (state.qr_image && !["confirmed", "already_bound", "failed"].includes(state.status)) {
      parts.push(el("img", { src: state.qr_image, alt: "绑定二维码", class: "qr", width: 220, height: 220 }),
        el("p", {}, "也可把此链接发给对方，在微信中打开：", el("br"), el("code", { class: "pre" }, state.qr_url)));
    }
    if (state.status === "need_verifycode") {
      const input = el("input", { name: "code", inputmode: "numeric", maxlength: 16, required: true });
      const send = el("button", { type: "submit" }, "提交");
      const form = el("form", { class: "row" }, field("手机上显示的数字", input), send);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        attempt(send, async () => render(await api(`/api/v1/channels/ilink/logins/${encodeURIComponent(state.id)}/verify`,
          { method: "POST", body: { code: input.value.trim() } })));
      });
      parts.push(form);
    }
    clear(show, parts);
  }

  button.addEventListener("click", () => attempt(button, async () => {
    clearTimeout(timer);
    const state = await api("/api/v1/channels/ilink/logins", { method: "POST", body: { grid_code: grid.value || null } });
    render(state);
    timer = setTimeout(() => follow(state.id), 2000);
  }));
  clear(box, el("h3", {}, "绑定一位居民或网格员的微信"),
    el("p", { class: "muted" }, "每人扫码一次：对方用微信扫描并确认后，即可与网格助手一对一聊天。网格员绑定后，用命令 gridbot group worker <微信用户ID> --channel ilink 把工单通知发到这里。"),
    el("div", { class: "row" }, field("居民所在网格", grid), button), show);
  return box;
}

export async function ilinkSection(account, info) {
  let data;
  try {
    data = await api("/api/v1/channels/ilink");
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null; // the channel does not run here
    return el("section", { class: "card" }, el("h2", {}, "个人微信（iLink）"), el("p", { class: "error" }, err.message));
  }
  const box = el("section", { class: "card", id: "ilink" });

  async function reload() {
    data = await api("/api/v1/channels/ilink");
    draw();
  }

  const login = account.role === "admin" ? loginBox(info, reload) : null;

  function draw() {
    const bindings = data.bindings.map((b) => el("tr", {},
      el("td", {}, b.user_id, el("br"), el("small", { class: "muted" }, b.bot_id)),
      el("td", {}, (info.grids.find((g) => g.code === b.grid_code) || {}).name || b.grid_code || "—"),
      el("td", {}, el("span", { class: `badge ${b.polling === "up" ? "ok" : "late"}` }, POLLING[b.polling] || b.polling)),
      el("td", { class: "pre" }, b.paused_until ? `暂停至 ${fmtTime(b.paused_until)}；${b.detail}` : b.detail)));
    const contacts = data.contacts.map((c) => el("tr", {},
      el("td", {}, c.worker_name ? `${c.worker_name}（网格员）` : c.contact_id, c.worker_name ? [el("br"), el("small", { class: "muted" }, c.contact_id)] : null),
      el("td", {}, fmtTime(c.last_inbound_at)), el("td", {}, c.window_until ? fmtTime(c.window_until) : "—"),
      el("td", {}, el("span", { class: `badge ${c.left > 0 ? "ok" : "late"}` }, String(c.left))),
      el("td", { class: "pre" }, c.last_refusal ? `${fmtTime(c.last_refusal_at)} ${c.last_refusal}` : "—")));
    const refused = data.refused.map((r) => el("tr", { dataset: { id: r.id } },
      el("td", {}, fmtTime(r.created_at)), el("td", {}, r.target_id), el("td", { class: "pre" }, r.text), el("td", { class: "pre" }, r.error)));
    clear(box, el("h2", {}, "个人微信（iLink）"),
      el("p", { class: "muted" }, `微信官方机器人通道，只能一对一私聊，不能进群、不能发群通知。对方发来消息后 ${data.window_hours} 小时内，`
        + `每条来信之后最多 ${data.messages_per_inbound} 条回复；超出的消息发不出去，列在下方“未能发出”。工单仍在管理台中。`),
      el("h3", {}, "已绑定"), table(["微信用户", "网格", "状态", "说明"], bindings, "还没有人绑定"),
      el("h3", {}, "回复窗口"), table(["联系人", "最后来信", "窗口至", "剩余条数", "最近拒发"], contacts, "还没有人发来消息"),
      el("h3", {}, "未能发出"), table(["时间", "发给", "内容", "原因"], refused, "没有"),
      login);
  }

  draw();
  return box;
}
