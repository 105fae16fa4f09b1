// How docs/mlflow-compare.png was made: headless Chromium, driven over the DevTools protocol, opens a
// real `mlflow ui` the way README *MLflow* says: the experiment's runs table, switched to the
// model-training view with the **Model training** toggle (top left), the two newest runs ticked,
// Compare; then in the parallel-coordinates plot it puts test_top1_error under Metrics (MLflow
// preselects the first metric it lists, here a system metric) and saves a screenshot of the page.
//
// The toggle, not the link's `?workflowType=machine_learning`: MLflow 3.17's UI takes the view from
// the URL's `workflowType`, else from what the browser remembers (localStorage `mlflow.workflowType_v1`,
// written only by that toggle), else GenAI; the Compare button's page (#/compare-runs) drops the URL
// parameter, so only a remembered choice keeps it out of the GenAI view.
//
//   mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 &
//   chromium --headless --no-sandbox --remote-debugging-port=9222 --window-size=1500,1500 &
//   node --experimental-websocket docs/mlflow_compare.mjs http://127.0.0.1:5000 <experiment id> docs/mlflow-compare.png
//
// Node >= 20 (its WebSocket); nothing to install. CDP_PORT: another DevTools port than 9222.
import { writeFileSync } from "node:fs";
import { connect, sleep } from "./cdp.mjs";

const [ui, experiment, out] = process.argv.slice(2);
const { ws, send, evaluate } = await connect();

// a real mouse click in the middle of the n-th visible element matching `css` whose text includes `text`
async function click(css, text = "", n = 0) {
  const box = await evaluate(`(() => { const els = [...document.querySelectorAll(${JSON.stringify(css)})]
      .filter(e => e.textContent.includes(${JSON.stringify(text)}) && e.getBoundingClientRect().width);
    const el = els[${n}]; if (!el) return null; el.scrollIntoView({ block: "center" });
    const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`);
  if (!box) throw new Error(`nothing to click: ${css} ${text} #${n}`);
  for (const type of ["mouseMoved", "mousePressed", "mouseReleased"]) {
    await send("Input.dispatchMouseEvent", { type, x: box[0], y: box[1], button: "left", clickCount: 1 });
  }
  await sleep(1500);
}
// a real mouse click in the middle of the element a JS expression gives
async function clickIn(expr) {
  const box = await evaluate(`(() => { const el = ${expr}; if (!el) return null; el.scrollIntoView({ block: "center" });
    const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`);
  if (!box) throw new Error(`nothing to click: ${expr}`);
  for (const type of ["mouseMoved", "mousePressed", "mouseReleased"]) {
    await send("Input.dispatchMouseEvent", { type, x: box[0], y: box[1], button: "left", clickCount: 1 });
  }
  await sleep(1500);
}
const type = async (text) => { for (const ch of text) await send("Input.dispatchKeyEvent", { type: "char", text: ch }); };
const key = async (k, code) => {
  await send("Input.dispatchKeyEvent", { type: "rawKeyDown", key: k, code, windowsVirtualKeyCode: code === "Enter" ? 13 : 27 });
  await send("Input.dispatchKeyEvent", { type: "keyUp", key: k, code });
  await sleep(800);
};

await send("Page.enable");
await send("Runtime.enable");
await send("Page.navigate", { url: `${ui}/#/experiments/${experiment}/runs` });
await sleep(8000);
await click('[role="button"]', "Model training");  // a no-op where the browser already remembers it
await sleep(4000);
const view = await evaluate('localStorage.getItem("mlflow.workflowType_v1")');
if (view !== JSON.stringify("machine_learning")) throw new Error(`the Model training toggle was not remembered: ${view}`);
await click('button[aria-label="Close"]').catch(() => {});  // the assistant panel, if open
const tick = 'input[aria-label^="Press Space to toggle row selection"]';  // newest first: the two experiments
for (const n of [0, 1]) await click(tick, "", n);
await click("button", "Compare");
await sleep(4000);
// the parallel-coordinates plot: replace MLflow's preselected metric with the test error
const metrics = `[...document.querySelectorAll("div")].find(d => d.textContent.trim() === "Metrics:").nextElementSibling`;
await clickIn(`${metrics}.querySelector(".du-bois-light-select-selection-item-remove")`);
await clickIn(`${metrics}.querySelector(".du-bois-light-select-selector")`);
await type("test_top1_error");
await key("Enter", "Enter");
await key("Escape", "Escape");
await send("Input.dispatchMouseEvent", { type: "mouseMoved", x: 2, y: 2 });  // no tooltip in the picture
await evaluate("window.scrollTo(0, 0)");
await sleep(2000);
const shot = await send("Page.captureScreenshot", { format: "png" });
writeFileSync(out, Buffer.from(shot.result.data, "base64"));
ws.close();
