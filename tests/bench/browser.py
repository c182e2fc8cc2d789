#!/usr/bin/env python3
"""Browser benchmark helper (tests/bench/browser.sh): drives headless Chromium through
chromedriver's WebDriver HTTP API (plain JSON over loopback, standard library only), opens a
node's control panel, downloads one network file into the page and measures it.

    browser.py --panel URL --file NAME --size BYTES --sha HEX --profile DIR

Prints one line of JSON: {"seconds": s, "bytes": n, "sha_ok": bool}.
The clock runs in the page: it starts when the Download button is clicked and stops when the
browser peer's row shows the file complete (every chunk verified and stored in IndexedDB).
"""
import argparse, json, os, socket, subprocess, sys, time, urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Driver:
    def __init__(self, profile):
        self.port = free_port()
        self.proc = subprocess.Popen(["/usr/bin/chromedriver", f"--port={self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("chromedriver did not start")
                time.sleep(0.05)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,1000", f"--user-data-dir={profile}"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium", "args": args}}}}
        self.session = self.req("POST", "/session", caps)["sessionId"]
        self.cmd("POST", "/timeouts", {"script": 600_000})

    def req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                   headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(r, timeout=900) as resp:
                value = json.load(resp)["value"]
        except urllib.error.HTTPError as e:
            value = json.load(e)["value"]
        if isinstance(value, dict) and "error" in value:
            raise RuntimeError(f"WebDriver {method} {path}: {value['error']}: {value.get('message', '')[:300]}")
        return value

    def cmd(self, method, path, body=None):
        return self.req(method, f"/session/{self.session}{path}", body if body is not None else {})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        return self.cmd("POST", "/execute/async", {"script": script, "args": list(args)})

    def wait(self, what, script, *args, timeout=120):
        deadline = time.time() + timeout
        while not self.js(script, *args):
            if time.time() > deadline:
                text = self.js("return document.body.innerText")
                raise SystemExit(f"timed out waiting until {what}; page:\n{text}")
            time.sleep(0.1)

    def close(self):
        try:
            self.req("DELETE", f"/session/{self.session}")
        finally:
            self.proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--panel", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--sha", required=True)
    ap.add_argument("--profile", required=True)
    a = ap.parse_args()
    d = Driver(a.profile)
    try:
        d.cmd("POST", "/url", {"url": a.panel})
        row = f'section.browser-peer button.download[data-file="{a.file}"]'
        d.wait("the page is a peer and offers the file", "return !!document.querySelector(arguments[0])", row)
        result = d.js_async("""
            const [button, name, done] = arguments;
            const start = performance.now();
            const complete = () => {
              const r = document.querySelector(`section.browser-peer tr.file[data-file="${name}"]`);
              return r && r.dataset.local === "1";
            };
            const obs = new MutationObserver(() => {
              if (complete()) { obs.disconnect(); done((performance.now() - start) / 1000); }
            });
            obs.observe(document.body, {subtree: true, childList: true, attributes: true});
            document.querySelector(button).click();
        """, row, a.file)
        seconds = float(result)
        # Check the bytes: assemble the file from IndexedDB and hash it in the page.
        d.js(f"document.querySelector('section.browser-peer button.save[data-file=\"{a.file}\"]').click()")
        d.wait("the file is assembled", "return !!document.querySelector(arguments[0])",
               f'a.save-link[data-file="{a.file}"]')
        sha = d.js_async("""
            const [sel, done] = arguments;
            fetch(document.querySelector(sel).href).then(r => r.arrayBuffer())
              .then(b => crypto.subtle.digest("SHA-256", b))
              .then(h => done(Array.from(new Uint8Array(h)).map(x => x.toString(16).padStart(2, "0")).join("")))
              .catch(e => done("error: " + e));
        """, f'a.save-link[data-file="{a.file}"]')
        print(json.dumps({"seconds": seconds, "bytes": a.size, "sha_ok": sha == a.sha}))
    finally:
        d.close()


if __name__ == "__main__":
    main()
