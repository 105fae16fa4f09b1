// The DevTools-protocol connection both screenshot scripts use (docs/mlflow_compare.mjs,
// docs/mlflow_screenshot.mjs): a new blank tab of the headless Chromium on CDP_PORT (default 9222),
// `send(method, params)` awaiting the reply, `evaluate(expression)` returning its value, `sleep(ms)`.
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function connect() {
  const target = await (await fetch(`http://127.0.0.1:${process.env.CDP_PORT || 9222}/json/new?about:blank`, { method: "PUT" })).json();
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((r) => ws.addEventListener("open", r));
  let next = 0;
  const waiting = new Map();
  ws.addEventListener("message", (e) => {
    const msg = JSON.parse(e.data);
    if (waiting.has(msg.id)) { waiting.get(msg.id)(msg); waiting.delete(msg.id); }
  });
  const send = (method, params = {}) => new Promise((r) => {
    const id = ++next; waiting.set(id, r); ws.send(JSON.stringify({ id, method, params }));
  });
  const evaluate = async (expr) => (await send("Runtime.evaluate", { expression: expr, returnByValue: true })).result.result.value;
  return { ws, send, evaluate };
}
