#!/usr/bin/env python3
"""Prints results-stream events (one JSON per line on stdin) as a short table."""
import json
import sys

for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    e = json.loads(line)
    extra = e.get("provider_id") or e.get("to_channel") or (e.get("error") or {}).get("message", "")
    print(f"{e['type']:<10} {e.get('channel') or '-':<6} {str(e.get('job_id')):<16} attempt {e.get('attempt')}  {extra}")
