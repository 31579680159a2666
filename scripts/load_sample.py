#!/usr/bin/env python3
"""Loads sample raw events into flexprice.raw_events through ClickHouse's HTTP interface (stdlib only).

Rows, all of one tenant/environment (default demo_tenant/demo_env), timestamps from 2024-03-01 over three days:
  - the real sample payload of Flexprice's bento-collector (tests/fixtures/sample_payload.json),
  - N realistic generated Bento payloads (default 5,000) over 20 customers,
  - a few invalid rows: not JSON, missing orgId, an unparseable createdAt, a marshal-error offset.
Ids are fixed, so loading twice only adds newer versions of the same rows (ReplacingMergeTree keeps one).

Usage: scripts/load_sample.py [--rows N] [--tenant T] [--environment E] [--url http://127.0.0.1:8123]
"""
import argparse
import datetime as dt
import json
import pathlib
import random
import sys
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
START = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)


def ts(ms: int) -> str:
    t = START + dt.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def ch_time(ms: int) -> str:
    t = START + dt.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def realistic(i: int, rng: random.Random, created: str) -> str:
    provider = rng.choice(["openai", "anthropic", "deepgram", "11labs", "cartesia", "aws"])
    method = rng.choice(["modeling", "transcription", "synthesizer", "BEDROCK_LLM"])
    model = rng.choice(["gpt-4.1", "gpt-4o-mini", "nova-2", "eleven_turbo_v2_5"])
    kind = i % 3
    if kind == 0:
        prompt = rng.randrange(200_000)
        data = {"modelName": model, "promptTokens": prompt, "cachedPromptTokens": prompt // 3,
                "completionTokens": rng.randrange(5_000)}
    elif kind == 1:
        data = {"modelName": model, "numCharacters": rng.randrange(1, 2_000), "channels": rng.randrange(1, 4)}
    else:
        data = {"modelName": {"key": "modelName", "value": model},
                "durationMS": {"key": "durationMS", "value": rng.randrange(1, 600_000)}}
    return json.dumps({
        "id": f"demo-evt-{i:06d}", "orgId": f"org-{i % 20:02d}", "targetItemType": "call",
        "targetItemId": f"item-{rng.getrandbits(48):012x}", "referenceType": "completion",
        "providerName": provider, "methodName": method, "createdAt": created, "updatedAt": created,
        "startedAt": created, "endedAt": created, "dataInterface": "MODEL_USAGE_DATA_TYPE",
        "byok": rng.random() < 0.5, "isSubscribed": False, "data": data,
        "referenceCost": round(rng.random() / 100, 6),
    }, separators=(",", ":"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--tenant", default="demo_tenant")
    ap.add_argument("--environment", default="demo_env")
    ap.add_argument("--url", default="http://127.0.0.1:8123")
    ap.add_argument("--database", default="flexprice")
    args = ap.parse_args()

    rng = random.Random(42)
    rows = []

    def add(rid: str, customer: str, ms: int, payload: str) -> None:
        rows.append({"id": rid, "tenant_id": args.tenant, "environment_id": args.environment,
                     "external_customer_id": customer, "event_name": "usage", "payload": payload,
                     "timestamp": ch_time(ms), "version": 1})

    sample = (ROOT / "tests/fixtures/sample_payload.json").read_text().strip()
    add("demo-sample", "deac54e3-32b0-45ea-b81f-aa344d304e0a", 1_000, sample)
    span = 3 * 86_400_000
    for i in range(args.rows):
        ms = (i * 51_839) % span
        add(f"demo-row-{i:06d}", f"org-{i % 20:02d}", ms, realistic(i, rng, ts(ms)))
    add("demo-bad-json", "org-00", 2_000, '{"id": "x", "orgId": ')
    add("demo-no-org", "org-00", 3_000, realistic(900_001, rng, ts(3_000)).replace('"orgId":"org-01"', '"orgId":""'))
    add("demo-bad-time", "org-00", 4_000, realistic(900_002, rng, "yesterday at noon"))
    add("demo-offset-24", "org-00", 5_000, realistic(900_003, rng, "2024-03-01T00:00:05.000+24:00"))

    body = "\n".join(json.dumps(r, separators=(",", ":")) for r in rows).encode()
    query = (f"INSERT INTO {args.database}.raw_events (id, tenant_id, environment_id, external_customer_id, "
             "event_name, payload, timestamp, version) FORMAT JSONEachRow")
    req = urllib.request.Request(f"{args.url}/?query={urllib.parse.quote(query)}", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        print(f"load_sample: ClickHouse refused the insert: {e.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"load_sample: cannot reach ClickHouse at {args.url}: {e} (run scripts/services.sh up)", file=sys.stderr)
        return 1
    count_sql = (f"SELECT count() FROM {args.database}.raw_events FINAL "
                 f"WHERE tenant_id = {{t:String}} AND environment_id = {{e:String}}")
    params = urllib.parse.urlencode({"query": count_sql, "param_t": args.tenant, "param_e": args.environment})
    with urllib.request.urlopen(f"{args.url}/?{params}", timeout=60) as resp:
        total = resp.read().decode().strip()
    print(f"loaded {len(rows)} raw events of {args.tenant}/{args.environment} "
          f"({args.rows} realistic, 1 sample, 4 invalid) from {ts(0)} over 3 days; "
          f"the table now holds {total} rows of {args.tenant}/{args.environment} (earlier loads included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
