"""One share of a large secrets scan, in a process of its own (see `secrets_scan`): reads
`[[index, name, diff], ...]` as JSON on stdin, writes `[[index, kind, line, value], ...]`. It
imports only `secrets_lines` (detect-secrets' side), so it starts in about 0.15 s."""

from __future__ import annotations

import json
import sys

from agents.analyzers.secrets_lines import Hit, scan_diffs


def main() -> None:
    items = json.loads(sys.stdin.buffer.read())
    hits: list[Hit] = []
    failed: list[int] = []
    for index, name, text in items:
        found, lost = scan_diffs([(name, text)], first=int(index))
        hits += found
        failed += lost
    json.dump({"hits": hits, "failed": failed}, sys.stdout)


if __name__ == "__main__":
    main()
