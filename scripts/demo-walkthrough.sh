#!/usr/bin/env bash
# The README's "Demo walkthrough", command for command: buy the seeded paid item through the local
# payment page, stream it, save progress, and watch the owner's dashboard change.
#
# Needs the stack from `make run` (it seeds the demo data) and curl + python3. Run it from any
# directory: cookie jars and downloads go to a temporary directory (kept; its path is printed).
#   scripts/demo-walkthrough.sh                    # against http://localhost:5000
#   CODEX_URL=http://localhost:8000 scripts/demo-walkthrough.sh
# The purchase can be made once per database: a second run reports 409 ALREADY_PURCHASED at
# checkout and carries on with the item already bought.
set -euo pipefail

cd "$(mktemp -d -t codex-demo.XXXXXX)"
echo "working directory: $PWD"
step() { printf '\n== %s\n' "$*"; }

# ---- setup (README: "Demo walkthrough", first block) ----
API=${CODEX_URL:-http://localhost:5000}/api/v1
ORIGIN=${CODEX_URL:-http://localhost:5000}
PASSWORD=${CODEX_SEED_PASSWORD:-CodexDemo-2024}
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

step "1. the owner signs in and looks at the dashboard (before)"
curl -s -c owner.jar -H 'Content-Type: application/json' \
  -d "{\"email\": \"owner@demo.codex.local\", \"password\": \"$PASSWORD\"}" "$API/auth/login" >/dev/null
ORG_ID=$(curl -s -b owner.jar "$API/auth/me" | json 'd["memberships"][0]["organization_id"]')
curl -s -b owner.jar "$API/orgs/$ORG_ID/dashboard/summary" | json 'd["all_time"]'

step "2. the customer signs in (the session cookie goes to customer.jar)"
curl -s -c customer.jar -H 'Content-Type: application/json' \
  -d "{\"email\": \"customer@demo.codex.local\", \"password\": \"$PASSWORD\"}" "$API/auth/login" | json 'd["user"]'

step "3. the public catalogue of the demo org (no sign-in needed)"
curl -s "$API/orgs/demo-studio/catalog" | json '[(i["title"], i["price_cents"], i["id"]) for i in d["items"]]'
PAID=$(curl -s "$API/orgs/demo-studio/catalog?sort=price_cents&order=desc" | json 'd["items"][0]["id"]')
FREE=$(curl -s "$API/orgs/demo-studio/catalog?sort=price_cents&order=asc" | json 'd["items"][0]["id"]')
curl -s -b customer.jar "$API/content/$FREE/access"
curl -s -b customer.jar "$API/content/$PAID/access"

step "4. checkout for the paid item"
curl -s -b customer.jar -H "Origin: $ORIGIN" -H 'Content-Type: application/json' \
  -d "{\"content_id\": \"$PAID\"}" "$API/checkout" | tee checkout.json
if grep -q ALREADY_PURCHASED checkout.json; then
  echo "(already bought in an earlier run: skipping to streaming)"
else
  CHECKOUT_URL=$(json 'd["checkout_url"]' < checkout.json)
  SESSION_ID=$(json 'd["session_id"]' < checkout.json)

  step "5. pay on the local payment page (in a browser: open \$CHECKOUT_URL and press Pay)"
  echo "$CHECKOUT_URL"
  curl -s -o /dev/null -w '%{http_code} -> %{redirect_url}\n' -X POST "$CHECKOUT_URL/pay"

  step "6. wait until a worker has turned the payment event into a purchase"
  until curl -s -b customer.jar "$API/checkout/sessions/$SESSION_ID" | json 'd["purchase"]["status"] if d["purchase"] else ""' | grep -q completed; do sleep 1; done
  curl -s -b customer.jar "$API/checkout/sessions/$SESSION_ID" | json '(d["status"], d["payment_status"], d["purchase"]["status"])'
fi
curl -s -b customer.jar "$API/content/$PAID/access"

step "7. stream it: a signed HLS manifest, its variant playlist, the first segment"
curl -s -b customer.jar "$API/content/$PAID/stream" | tee stream.json | json '{k: d[k] for k in ("content_type", "duration_seconds", "renditions", "expires_at")}'
MANIFEST=$(json 'd["manifest_url"]' < stream.json)
curl -s "$MANIFEST"
VARIANT=$(curl -s "$MANIFEST" | grep -v '^#' | head -n 1)
SEGMENT=$(curl -s "$VARIANT" | grep -v '^#' | head -n 1)
curl -s -o segment.ts -w 'first segment: %{http_code} %{content_type} %{size_download} bytes\n' "$SEGMENT"
echo "play it: ffplay \"$MANIFEST\"   (or open the URL in VLC / Safari / an hls.js page)"

step "8. save the playback position, read it back, see the library"
curl -s -o /dev/null -w 'PUT progress: %{http_code}\n' -X PUT -b customer.jar -H "Origin: $ORIGIN" \
  -H 'Content-Type: application/json' -d '{"position_seconds": 2.5, "duration_seconds": 4}' "$API/content/$PAID/progress"
curl -s -b customer.jar "$API/content/$PAID/progress"
curl -s -b customer.jar "$API/me/library" | json '[(i["content"]["title"], i["access"]["reason"], i["progress"] and i["progress"]["percent_complete"]) for i in d["items"]]'

step "9. the owner's dashboard (after) and the revenue chart"
curl -s -b owner.jar "$API/orgs/$ORG_ID/dashboard/summary" | json '(d["all_time"], d["customer_count"], d["recent_purchases"][:1])'
curl -s -b owner.jar -o revenue.svg -w 'revenue.svg: %{http_code} %{content_type} %{size_download} bytes\n' \
  "$API/orgs/$ORG_ID/dashboard/revenue.svg"
echo "open $PWD/revenue.svg in a browser"

step "10. which lessons keep their audience: the free item's engagement and retention curve"
curl -s -b owner.jar "$API/orgs/$ORG_ID/dashboard/content/$FREE/engagement" | json '{k: d[k] for k in ("title", "viewers", "completions", "completion_rate", "average_percent_watched", "seconds_watched")}'
curl -s -b owner.jar "$API/orgs/$ORG_ID/dashboard/content/$FREE/engagement" | json '[(p["percent"], p["viewers_fraction"]) for p in d["retention"][::5]]'
curl -s -b owner.jar -o retention.svg -w 'retention.svg: %{http_code} %{content_type} %{size_download} bytes\n' \
  "$API/orgs/$ORG_ID/dashboard/content/$FREE/retention.svg"
echo "open $PWD/retention.svg in a browser"
