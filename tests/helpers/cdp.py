"""A small driver for headless Chromium over the DevTools protocol (websocket-client), for tests
of web pages: evaluate JavaScript, wait for a condition, set a file input, click like a user (a
real mouse event, which counts as a gesture for media playback), take a screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import httpx
import websocket

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--window-size=1100,1000"]


class Chromium:
    """Headless Chromium showing `url`; stopped (its process group, by PID) on exit."""

    def __init__(self, url: str, profile: Path, timeout: float = 60, flags: tuple[str, ...] = ()):
        self.url, self.profile, self.timeout, self.flags = url, profile, timeout, flags
        self._ids = itertools.count(1)

    def __enter__(self) -> Self:
        self.profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, *self.flags, f"--user-data-dir={self.profile}",
                                      self.url], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = self.profile / "DevToolsActivePort"
            deadline = time.monotonic() + self.timeout
            while not port_file.is_file() or not port_file.read_text().strip():
                assert self.proc.poll() is None and time.monotonic() < deadline, "no Chromium"
                time.sleep(0.2)
            port = int(port_file.read_text().split()[0])
            while True:
                pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                         if t["type"] == "page"]
                if pages:
                    break
                assert time.monotonic() < deadline, "Chromium opened no page"
                time.sleep(0.2)
            self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"],
                                                  timeout=self.timeout, suppress_origin=True)
            self.wait_for("location.href !== 'about:blank' && document.readyState === 'complete'")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def send(self, method: str, **params: Any) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str) -> None:
        """Poll `expression` until it is truthy (errors while the page loads count as false)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if self.evaluate(expression):
                    return
            except RuntimeError:
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.2)

    def set_file(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def click(self, selector: str) -> None:
        """Press and release the left mouse button on the middle of the first match."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x + r.width / 2, "
                            "r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                      clickCount=1)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot")["data"]))
        return path


def offline_vega_template(path: Path) -> Path:
    """An HTML template for `dvc plots show --html-template` that carries Vega, Vega-Lite and
    Vega-Embed inline (vl-convert's bundle) instead of DVC's CDN links: no network here."""
    import vl_convert

    bundle = vl_convert.javascript_bundle()
    path.write_text('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>plots</title>\n'
                    f'<script>{bundle}</script>\n</head>\n'
                    '<body>\n{plot_divs}\n</body></html>\n', encoding="utf-8")
    return path
