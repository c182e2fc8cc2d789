// The browser peer's engine runs in this dedicated module worker, off the page's
// thread (web/src/worker.rs): the same wasm bundle as the page, entered at worker_main.
// Commands the page posts while the module loads are kept and handed over in order.
import init, { worker_main } from "./torronto_web.js";

const early = [];
self.onmessage = (e) => early.push(e.data);
await init();
worker_main(early);
