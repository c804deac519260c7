"""Benchmark: how fast `chatops serve` acks slash commands, next to a bare Bolt app.

Sends N signed `/agent analyze branch ...` commands, C at a time, to `chatops serve` in HTTP mode
(with the fake Slack Web API on 127.0.0.1 and a real repository), and the same load to a bare
Bolt app on the same adapter that only acks, in the same run. Prints p50 / p99 ack latency of
both, their ratio (target: p99 within 1.5x of the bare app, and always under 3 s), and the time
from command to the parent message in the channel.

    python bench/slack_ack_latency.py [--requests 200] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack  # noqa: E402

SECRET = "bench-signing-secret"
BARE_APP = textwrap.dedent(
    """
    import sys, uvicorn
    from slack_bolt import App
    from slack_bolt.adapter.asgi import SlackRequestHandler
    from slack_sdk import WebClient
    app = App(client=WebClient(token=sys.argv[2], base_url=sys.argv[3]), signing_secret=sys.argv[4])
    @app.command("/agent")
    def agent(ack):
        ack()
    uvicorn.run(SlackRequestHandler(app), host="127.0.0.1", port=int(sys.argv[1]),
                log_level="warning")
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"server exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # up, answering 404 for GET
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def send(url: str, branch: str, response_url: str) -> tuple[float, float, int]:
    body = urlencode(
        {
            "command": "/agent",
            "text": f"analyze branch {branch}",
            "user_id": "W111",
            "channel_id": "C111",
            "team_id": "T111",
            "response_url": response_url,
            "trigger_id": f"{branch}.{time.monotonic_ns()}",
        }
    ).encode()
    ts = str(int(time.time()))
    signature = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": f"v0={signature}",
        },
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        status = response.status
    return started, time.perf_counter() - started, status


def load(
    url: str, branches: list[str], concurrency: int, response_url: str
) -> tuple[list[float], dict[str, float]]:
    sent: dict[str, float] = {}
    latencies: list[float] = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for branch, (started, latency, status) in zip(
            branches, pool.map(lambda b: send(url, b, response_url), branches), strict=True
        ):
            assert status == 200, status
            sent[branch] = started
            latencies.append(latency)
    return latencies, sent


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatops-ack-") as scratch, FakeSlack() as slack:
        root = Path(scratch)
        repo = root / "shop"
        run = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
        repo.mkdir()
        run("init", "-q", "-b", "main")
        run("config", "user.email", "b@example.invalid")
        run("config", "user.name", "bench")
        (repo / "app.py").write_text("def f(x):\n    return x\n")
        run("add", "-A")
        run("commit", "-qm", "base")
        run("checkout", "-qb", "feature/base")
        (repo / "app.py").write_text("def f(x):\n    return eval(x)\n")
        run("commit", "-qam", "change")
        branches = [f"feature/b{i}" for i in range(args.requests)]
        for branch in branches:
            run("branch", branch, "feature/base")
        (root / "chatops.toml").write_text(f'[repos.shop]\npath = "{repo}"\n')
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CHATOPS_", "ANTHROPIC_", "SLACK_", "DATABASE_URL"))
        }
        env.update(
            CHATOPS_DATA_DIR=str(root / "data"),
            CHATOPS_CONFIG=str(root / "chatops.toml"),
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
        )
        ours_port, bare_port = free_port(), free_port()
        ours = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(ours_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        bare = subprocess.Popen(
            [sys.executable, "-c", BARE_APP, str(bare_port), BOT_TOKEN, slack.api_url, SECRET],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_up(f"http://127.0.0.1:{ours_port}/healthz", ours)
            wait_up(f"http://127.0.0.1:{bare_port}/", bare)
            response_url = slack.response_url()
            # Warm both up (imports, first connections), then measure.
            load(
                f"http://127.0.0.1:{bare_port}/slack/events", ["feature/base"] * 5, 5, response_url
            )
            bare_lat, _ = load(
                f"http://127.0.0.1:{bare_port}/slack/events",
                branches,
                args.concurrency,
                response_url,
            )
            load(f"http://127.0.0.1:{ours_port}/slack/events", ["feature/base"], 1, response_url)
            time.sleep(2)
            ours_lat, sent = load(
                f"http://127.0.0.1:{ours_port}/slack/events",
                branches,
                args.concurrency,
                response_url,
            )
            posted: dict[str, float] = {}
            deadline = time.monotonic() + 120
            while len(posted) < len(branches) and time.monotonic() < deadline:
                for call in slack.called("chat.postMessage"):
                    text = str(call.args.get("text", ""))
                    for branch in branches:
                        if f"Analyzing {branch} in" in text and branch not in posted:
                            posted[branch] = call.at
                time.sleep(0.2)
        finally:
            for process in (ours, bare):
                process.terminate()
                process.wait(timeout=15)
    # FakeSlack stamps calls with time.monotonic(); sends were stamped with perf_counter():
    # both are monotonic clocks of this process, offset by a constant we measure here.
    offset = time.monotonic() - time.perf_counter()
    to_parent = [posted[b] - (sent[b] + offset) for b in branches if b in posted]
    b50, b99 = pct(bare_lat, 50), pct(bare_lat, 99)
    o50, o99 = pct(ours_lat, 50), pct(ours_lat, 99)
    print(f"{args.requests} signed slash commands, {args.concurrency} at a time")
    print(f"bare Bolt app (ack only): p50 {b50 * 1000:6.1f} ms   p99 {b99 * 1000:6.1f} ms")
    print(f"chatops serve           : p50 {o50 * 1000:6.1f} ms   p99 {o99 * 1000:6.1f} ms")
    print(
        f"ratio p99 chatops / bare: {o99 / b99:.2f}x (target <= 1.5x); max ack "
        f"{max(ours_lat) * 1000:.0f} ms (must stay < 3000 ms)"
    )
    if to_parent:
        print(
            f"command to parent message: p50 {statistics.median(to_parent) * 1000:.0f} ms, "
            f"p99 {pct(to_parent, 99) * 1000:.0f} ms ({len(to_parent)} of {len(branches)} posted)"
        )


if __name__ == "__main__":
    main()
