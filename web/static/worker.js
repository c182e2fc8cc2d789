// The browser peer's engine runs in this dedicated module worker, off the page's
// thread (web/src/worker.rs): the same wasm bundle as the page, entered at worker_main.
// Commands the page posts while the module loads are kept and handed over in order.
//
// No top-level await: a module worker's messages may be held until its evaluation
// ends, so the engine starts once both the module is ready and the page's first
// message (Start, which carries the network secret) is here, whichever comes last.
// Started before Start arrived, the page's peer would join as an open-network peer.
import init, { worker_main } from "./torronto_web.js";

const early = [];
let loaded = false;
let started = false;

function startWhenReady() {
  if (loaded && early.length > 0 && !started) {
    started = true;
    worker_main(early);
  }
}

self.onmessage = (e) => {
  early.push(e.data);
  startWhenReady();
};
init().then(() => {
  loaded = true;
  startWhenReady();
});
