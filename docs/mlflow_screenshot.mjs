// How docs/mlflow-runs.png was made: headless Chromium, driven over the DevTools protocol, clicks
// through a real `mlflow ui` the way the README says (the Model training view, Sort by train.image_size,
// train.tmax and test_top1_error, each of which also shows that column) and saves a screenshot.
//
//   mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 &
//   chromium --headless --no-sandbox --remote-debugging-port=9222 --window-size=1800,480 &
//   node --experimental-websocket docs/mlflow_screenshot.mjs http://127.0.0.1:5000 <experiment id> docs/mlflow-runs.png
//
// Node >= 20 (its WebSocket); nothing to install. CDP_PORT: another DevTools port than 9222.
import { writeFileSync } from "node:fs";
import { connect, sleep } from "./cdp.mjs";

const [ui, experiment, out] = process.argv.slice(2);
const { ws, send, evaluate } = await connect();

// a real mouse click in the middle of the first element matching `css` whose text includes `text`
async function click(css, text = "") {
  const box = await evaluate(`(() => { const el = [...document.querySelectorAll(${JSON.stringify(css)})]
      .find(e => e.textContent.includes(${JSON.stringify(text)}) && e.getBoundingClientRect().width);
    if (!el) return null; el.scrollIntoView({ block: "center" });
    const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`);
  if (!box) throw new Error(`nothing to click: ${css} ${text}`);
  for (const type of ["mouseMoved", "mousePressed", "mouseReleased"]) {
    await send("Input.dispatchMouseEvent", { type, x: box[0], y: box[1], button: "left", clickCount: 1 });
  }
  await sleep(1500);
}

await send("Page.enable");
await send("Runtime.enable");
await send("Page.navigate", { url: `${ui}/#/experiments/${experiment}/runs?workflowType=machine_learning` });
await sleep(8000);
await click('button[aria-label="Close"]').catch(() => {});  // the assistant panel, if open: room for the table
for (const key of ["train.image_size", "train.tmax", "test_top1_error"]) {
  await click("button", "Sort");
  await click(`[data-testid="sort-select-${key}"]`);
}
await send("Input.dispatchKeyEvent", { type: "keyDown", key: "Escape" });
await send("Input.dispatchMouseEvent", { type: "mouseMoved", x: 2, y: 2 });  // no tooltip in the picture
await sleep(2000);
const shot = await send("Page.captureScreenshot", { format: "png" });
writeFileSync(out, Buffer.from(shot.result.data, "base64"));
ws.close();
