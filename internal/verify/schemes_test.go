package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

// Published vectors, each from its source.
const (
	// The Standard Webhooks specification's example, also in Svix's
	// "Verifying webhooks manually" docs (https://docs.svix.com/receiving/verifying-payloads/how-manual).
	swSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swTimestamp = "1614265330"
	swBody      = `{"test": 2432232314}`
	swSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

	// Slack's worked example in "Verifying requests from Slack"
	// (https://api.slack.com/authentication/verifying-requests-from-slack).
	slackSecret    = "8f742231b10e8888abcd99yyyzzz85a5"
	slackTimestamp = "1531420618"
	slackBody      = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	slackSignature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

	// Produced by Stripe's official Go library, stripe-go v82.5.1:
	// webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: stripeBody,
	// Secret: stripeSecret, Timestamp: time.Unix(1700000000, 0)}).Header, which
	// webhook.ConstructEvent accepts within the tolerance.
	stripeSecret    = "whsec_test_codemie_edge_vector"
	stripeBody      = `{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid"}`
	stripeTimestamp = 1700000000
	stripeHeader    = "t=1700000000,v1=1b4a0664ab6adf02f570e8b997e53e976910fbd0fc49c74fdbacb26d4358e04a"

	// Zendesk publishes its static test signing secret
	// (https://developer.zendesk.com/documentation/webhooks/verifying/) but no
	// byte-exact example; this signature is OpenSSL's output for the
	// documented construction, base64(HMAC-SHA256(secret, timestamp + body)):
	//   printf '%s' "$zendeskTimestamp$zendeskBody" |
	//     openssl dgst -sha256 -hmac "$zendeskSecret" -binary | base64
	zendeskSecret    = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
	zendeskTimestamp = "2021-03-25T05:09:27Z"
	zendeskBody      = `{"type":"zen:event-type:ticket.created","id":"01FZSJ0ZMB9C4RQPRJ3WV6PX8B","detail":{"id":"12345"}}`
	zendeskSignature = "C/lWUhUVb9uBDpnO85QC5Zc7hU3HQkRbzUpGUn6AUmI="
)

// schemeIntegration decodes an integration with a signature scheme, as a
// stored record would be.
func schemeIntegration(t *testing.T, fields map[string]string) *integration.Integration {
	t.Helper()
	in, err := integration.Decode("wh", fields, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func hmacHex(key, msg string) string {
	return hex.EncodeToString(testenv.HMACSHA256([]byte(key), msg))
}

func TestSchemes(t *testing.T) {
	sw := func(secret string) *integration.Integration {
		return schemeIntegration(t, map[string]string{"signature_scheme": "standard-webhooks", "signature_secret": secret})
	}
	swNow := time.Unix(1614265330, 0)
	swHeaders := func(sig, ts string) http.Header {
		return headers("webhook-id", swID, "webhook-timestamp", ts, "webhook-signature", sig)
	}
	slackIn := func(secret string) *integration.Integration {
		return schemeIntegration(t, map[string]string{"signature_scheme": "slack", "signature_secret": secret})
	}
	slackNow := time.Unix(1531420618, 0)
	stripeIn := func(secret string) *integration.Integration {
		return schemeIntegration(t, map[string]string{"signature_scheme": "stripe", "signature_secret": secret})
	}
	stripeNow := time.Unix(stripeTimestamp, 0)
	zdIn := func(secret string) *integration.Integration {
		return schemeIntegration(t, map[string]string{"signature_scheme": "zendesk", "signature_secret": secret})
	}
	zdNow, _ := time.Parse(time.RFC3339, zendeskTimestamp)
	otherKey := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another-key-of-another-sender"))

	for _, tc := range []struct {
		name    string
		in      *integration.Integration
		h       http.Header
		body    string
		now     time.Time
		want    Outcome
		eventID string
	}{
		// Standard Webhooks.
		{"standard webhooks vector", sw(swSecret), swHeaders(swSignature, swTimestamp), swBody, swNow, Pass, swID},
		{"standard webhooks svix headers", sw(swSecret), headers("svix-id", swID, "svix-timestamp", swTimestamp, "svix-signature", swSignature), swBody, swNow, Pass, swID},
		{"standard webhooks several signatures", sw(swSecret), swHeaders("v1,bm90IGl0 v2,xyz "+swSignature, swTimestamp), swBody, swNow, Pass, swID},
		{"standard webhooks rotated secret", sw(otherKey + "\n" + swSecret), swHeaders(swSignature, swTimestamp), swBody, swNow, Pass, swID},
		{"standard webhooks tampered body", sw(swSecret), swHeaders(swSignature, swTimestamp), swBody + " ", swNow, SchemeSignatureInvalid, ""},
		{"standard webhooks wrong secret", sw(otherKey), swHeaders(swSignature, swTimestamp), swBody, swNow, SchemeSignatureInvalid, ""},
		{"standard webhooks another id", sw(swSecret), headers("webhook-id", "msg_other", "webhook-timestamp", swTimestamp, "webhook-signature", swSignature), swBody, swNow, SchemeSignatureInvalid, ""},
		{"standard webhooks stale", sw(swSecret), swHeaders(swSignature, swTimestamp), swBody, swNow.Add(6 * time.Minute), SignatureStale, ""},
		{"standard webhooks future", sw(swSecret), swHeaders(swSignature, swTimestamp), swBody, swNow.Add(-6 * time.Minute), SignatureStale, ""},
		{"standard webhooks within tolerance", sw(swSecret), swHeaders(swSignature, swTimestamp), swBody, swNow.Add(4 * time.Minute), Pass, swID},
		{"standard webhooks missing", sw(swSecret), headers(), swBody, swNow, SchemeSignatureMissing, ""},
		{"standard webhooks bad timestamp", sw(swSecret), swHeaders(swSignature, "yesterday"), swBody, swNow, SchemeSignatureInvalid, ""},

		// Slack.
		{"slack vector", slackIn(slackSecret), headers("X-Slack-Request-Timestamp", slackTimestamp, "X-Slack-Signature", slackSignature), slackBody, slackNow, Pass, ""},
		{"slack rotated secret", slackIn("old-secret\n" + slackSecret), headers("X-Slack-Request-Timestamp", slackTimestamp, "X-Slack-Signature", slackSignature), slackBody, slackNow, Pass, ""},
		{"slack tampered body", slackIn(slackSecret), headers("X-Slack-Request-Timestamp", slackTimestamp, "X-Slack-Signature", slackSignature), slackBody + "&x=1", slackNow, SchemeSignatureInvalid, ""},
		{"slack wrong secret", slackIn("bogus"), headers("X-Slack-Request-Timestamp", slackTimestamp, "X-Slack-Signature", slackSignature), slackBody, slackNow, SchemeSignatureInvalid, ""},
		{"slack stale", slackIn(slackSecret), headers("X-Slack-Request-Timestamp", slackTimestamp, "X-Slack-Signature", slackSignature), slackBody, slackNow.Add(301 * time.Second), SignatureStale, ""},
		{"slack future", slackIn(slackSecret), headers("X-Slack-Request-Timestamp", slackTimestamp, "X-Slack-Signature", slackSignature), slackBody, slackNow.Add(-301 * time.Second), SignatureStale, ""},
		{"slack upper-case hex", slackIn(slackSecret), headers("X-Slack-Request-Timestamp", slackTimestamp, "X-Slack-Signature", "v0="+strings.ToUpper(slackSignature[3:])), slackBody, slackNow, SchemeSignatureInvalid, ""},
		{"slack missing timestamp", slackIn(slackSecret), headers("X-Slack-Signature", slackSignature), slackBody, slackNow, SchemeSignatureMissing, ""},
		{"slack event id", slackIn("k"), headers("X-Slack-Request-Timestamp", slackTimestamp, "X-Slack-Signature",
			"v0="+hmacHex("k", "v0:"+slackTimestamp+`:{"event_id":"Ev123"}`)), `{"event_id":"Ev123"}`, slackNow, Pass, "Ev123"},

		// Stripe.
		{"stripe vector", stripeIn(stripeSecret), headers("Stripe-Signature", stripeHeader), stripeBody, stripeNow, Pass, "evt_1NG8Du2eZvKYlo2CUI79vXWy"},
		{"stripe several v1 and a v0", stripeIn(stripeSecret), headers("Stripe-Signature", "t=1700000000,v1="+strings.Repeat("0", 64)+","+stripeHeader[13:]+",v0=abc"), stripeBody, stripeNow, Pass, "evt_1NG8Du2eZvKYlo2CUI79vXWy"},
		{"stripe rotated secret", stripeIn("whsec_old\n" + stripeSecret), headers("Stripe-Signature", stripeHeader), stripeBody, stripeNow, Pass, "evt_1NG8Du2eZvKYlo2CUI79vXWy"},
		{"stripe tampered body", stripeIn(stripeSecret), headers("Stripe-Signature", stripeHeader), strings.Replace(stripeBody, "paid", "void", 1), stripeNow, SchemeSignatureInvalid, ""},
		{"stripe wrong secret", stripeIn("whsec_other"), headers("Stripe-Signature", stripeHeader), stripeBody, stripeNow, SchemeSignatureInvalid, ""},
		{"stripe stale", stripeIn(stripeSecret), headers("Stripe-Signature", stripeHeader), stripeBody, stripeNow.Add(time.Hour), SignatureStale, ""},
		{"stripe future", stripeIn(stripeSecret), headers("Stripe-Signature", stripeHeader), stripeBody, stripeNow.Add(-time.Hour), SignatureStale, ""},
		{"stripe another timestamp", stripeIn(stripeSecret), headers("Stripe-Signature", "t=1700000001"+stripeHeader[12:]), stripeBody, stripeNow, SchemeSignatureInvalid, ""},
		{"stripe no timestamp", stripeIn(stripeSecret), headers("Stripe-Signature", stripeHeader[13:]), stripeBody, stripeNow, SchemeSignatureInvalid, ""},

		// Zendesk.
		{"zendesk vector", zdIn(zendeskSecret), headers("X-Zendesk-Webhook-Signature", zendeskSignature, "X-Zendesk-Webhook-Signature-Timestamp", zendeskTimestamp,
			"X-Zendesk-Webhook-Invocation-Id", "inv-1"), zendeskBody, zdNow, Pass, "inv-1"},
		{"zendesk rotated secret", zdIn("old\n" + zendeskSecret), headers("X-Zendesk-Webhook-Signature", zendeskSignature, "X-Zendesk-Webhook-Signature-Timestamp", zendeskTimestamp), zendeskBody, zdNow, Pass, ""},
		{"zendesk tampered body", zdIn(zendeskSecret), headers("X-Zendesk-Webhook-Signature", zendeskSignature, "X-Zendesk-Webhook-Signature-Timestamp", zendeskTimestamp), zendeskBody[1:], zdNow, SchemeSignatureInvalid, ""},
		{"zendesk wrong secret", zdIn("other"), headers("X-Zendesk-Webhook-Signature", zendeskSignature, "X-Zendesk-Webhook-Signature-Timestamp", zendeskTimestamp), zendeskBody, zdNow, SchemeSignatureInvalid, ""},
		{"zendesk stale", zdIn(zendeskSecret), headers("X-Zendesk-Webhook-Signature", zendeskSignature, "X-Zendesk-Webhook-Signature-Timestamp", zendeskTimestamp), zendeskBody, zdNow.Add(10 * time.Minute), SignatureStale, ""},
		{"zendesk future", zdIn(zendeskSecret), headers("X-Zendesk-Webhook-Signature", zendeskSignature, "X-Zendesk-Webhook-Signature-Timestamp", zendeskTimestamp), zendeskBody, zdNow.Add(-10 * time.Minute), SignatureStale, ""},
		{"zendesk unix timestamp", zdIn(zendeskSecret), headers("X-Zendesk-Webhook-Signature", zendeskSignature, "X-Zendesk-Webhook-Signature-Timestamp", "1616648967"), zendeskBody, zdNow, SchemeSignatureInvalid, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.in, tc.h, []byte(tc.body), Options{Now: tc.now})
			if r.Outcome != tc.want || r.EventID != tc.eventID {
				t.Errorf("got %+v, want %s with event id %q", r, tc.want, tc.eventID)
			}
			if tc.want == SignatureStale && r.Message != "Webhook timestamp outside the allowed window" {
				t.Errorf("stale message %q", r.Message)
			}
		})
	}
}

func TestGenericHMACAndHubSignature(t *testing.T) {
	b64 := func(hexSig string) string {
		raw, _ := hex.DecodeString(hexSig)
		return base64.StdEncoding.EncodeToString(raw)
	}
	vector := strings.TrimPrefix(vectorSignature, "sha256=")
	hexIn := schemeIntegration(t, map[string]string{"signature_scheme": "hmac-sha256", "signature_secret": vectorSecret,
		"signature_header": "X-Signature", "signature_prefix": "sha256="})
	b64In := schemeIntegration(t, map[string]string{"signature_scheme": "hmac-sha256", "signature_secret": "rotated-out\n" + vectorSecret,
		"signature_header": "X-Payload-Signature", "signature_encoding": "base64"})
	// Jira Cloud, Bitbucket and WebSub sign like GitHub, in X-Hub-Signature.
	hub := &integration.Integration{ID: "jira", GitHubRequireSHA256: true, GitHubSecret: secrets(vectorSecret)}
	for _, tc := range []struct {
		name string
		in   *integration.Integration
		h    http.Header
		body string
		want Outcome
	}{
		{"hex with prefix", hexIn, headers("X-Signature", vectorSignature), vectorBody, Pass},
		{"hex upper-case", hexIn, headers("X-Signature", "sha256="+strings.ToUpper(vector)), vectorBody, Pass},
		{"hex without the prefix", hexIn, headers("X-Signature", vector), vectorBody, SchemeSignatureInvalid},
		{"hex tampered", hexIn, headers("X-Signature", vectorSignature), vectorBody + "!", SchemeSignatureInvalid},
		{"hex missing", hexIn, headers(), vectorBody, SchemeSignatureMissing},
		{"base64, rotated", b64In, headers("X-Payload-Signature", b64(vector)), vectorBody, Pass},
		{"base64 wrong", b64In, headers("X-Payload-Signature", b64(strings.Repeat("00", 32))), vectorBody, SchemeSignatureInvalid},
		{"X-Hub-Signature sha256, sha256 required", hub, headers("X-Hub-Signature", vectorSignature), vectorBody, Pass},
		{"X-Hub-Signature sha256 wrong", hub, headers("X-Hub-Signature", "sha256="+strings.Repeat("0", 64)), vectorBody, SignatureInvalid},
		{"X-Hub-Signature sha1, sha256 required", hub, headers("X-Hub-Signature", testenv.SignGitHub1(vectorSecret, vectorBody)), vectorBody, SignatureMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := Check(tc.in, tc.h, []byte(tc.body), Options{}); r.Outcome != tc.want {
				t.Errorf("got %+v, want %s", r, tc.want)
			}
		})
	}
}

func TestEventFilterOnPayloadField(t *testing.T) {
	in := schemeIntegration(t, map[string]string{"secure_header_name": "X-Key", "secure_header_value": "k",
		"event_filter": "jira:issue_created, jira:issue_updated", "event_field": "webhookEvent"})
	h := headers("X-Key", "k")
	if r := Check(in, h, []byte(`{"webhookEvent":"jira:issue_updated"}`), Options{}); r.Outcome != Pass {
		t.Errorf("allowed event: %+v", r)
	}
	if r := Check(in, h, []byte(`{"webhookEvent":"jira:issue_deleted"}`), Options{}); r.Outcome != Filtered || r.Status != 200 {
		t.Errorf("other event: %+v", r)
	}
	if r := Check(in, headers(), []byte(`{"webhookEvent":"jira:issue_deleted"}`), Options{}); r.Outcome != SecureHeaderInvalid {
		t.Errorf("the filter spoke before authentication: %+v", r)
	}
	typed := schemeIntegration(t, map[string]string{"secure_header_name": "X-Key", "secure_header_value": "k", "event_filter": "invoice.paid"})
	if r := Check(typed, h, []byte(`{"type":"invoice.paid"}`), Options{}); r.Outcome != Pass {
		t.Errorf("default event_field type: %+v", r)
	}
}

// TestEventFieldIsAPath: event_field reads a key at a path, never a gjson
// modifier: "@pretty" recursed once per level of a body read before its
// depth is checked, and 20 MB of "[" overflowed the stack, a fatal error
// that took Caddy down.
func TestEventFieldIsAPath(t *testing.T) {
	for _, tc := range []struct {
		field, body string
		want        Outcome
	}{
		{"@pretty", strings.Repeat("[", 20<<20), Filtered},
		{"@pretty", `{"@pretty":"push"}`, Pass},
		{"data.kind", `{"data":{"kind":"push"}}`, Pass},
		{`data\.kind`, `{"data.kind":"push"}`, Pass},
	} {
		in := schemeIntegration(t, map[string]string{"secure_header_name": "X-Key", "secure_header_value": "k",
			"event_filter": "push", "event_field": tc.field})
		if r := Check(in, headers("X-Key", "k"), []byte(tc.body), Options{}); r.Outcome != tc.want {
			t.Errorf("event_field %q over %.20q: %s, want %s", tc.field, tc.body, r.Outcome, tc.want)
		}
	}
}

func FuzzParseStandardSignatures(f *testing.F) {
	f.Add(swSignature)
	f.Add("v1,bm90IGl0 v2,xyz v1,")
	f.Add(strings.Repeat("v1,"+swSignature[3:]+" ", 20))
	f.Fuzz(func(t *testing.T, v string) {
		sums := ParseStandardSignatures(v)
		checkParsedSums(t, sums)
	})
}

func FuzzParseStripeSignature(f *testing.F) {
	f.Add(stripeHeader)
	f.Add("t=,v1=,v0=x,,=")
	f.Fuzz(func(t *testing.T, v string) {
		_, sums := ParseStripeSignature(v)
		checkParsedSums(t, sums)
	})
}

// checkParsedSums fails t unless sums are few enough and each a SHA-256.
func checkParsedSums(t *testing.T, sums [][]byte) {
	t.Helper()
	if len(sums) > maxSignatures {
		t.Fatalf("%d signatures kept", len(sums))
	}
	for _, s := range sums {
		if len(s) != sha256.Size {
			t.Fatalf("a signature of %d bytes", len(s))
		}
	}
}

func FuzzParseUnixTimestamp(f *testing.F) {
	for _, s := range []string{"1614265330", "-1", "0", "99999999999999999999", "1e9", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if ts, ok := ParseUnixTimestamp(v); ok && (ts.Unix() <= 0 || ts.Unix() > 1<<40) {
			t.Fatalf("accepted %q as %v", v, ts)
		}
	})
}

// FuzzSchemes feeds arbitrary headers to every scheme: nothing panics, and
// nothing passes that a real secret did not sign.
func FuzzSchemes(f *testing.F) {
	f.Add("standard-webhooks", swID, swTimestamp, swSignature, []byte(swBody))
	f.Add("slack", "", slackTimestamp, slackSignature, []byte(slackBody))
	f.Add("stripe", "", "", stripeHeader, []byte(stripeBody))
	f.Add("zendesk", "", zendeskTimestamp, zendeskSignature, []byte(zendeskBody))
	f.Add("hmac-sha256", "", "", vectorSignature, []byte(vectorBody))
	f.Fuzz(func(t *testing.T, scheme, id, ts, sig string, body []byte) {
		in, err := integration.Decode("fz", map[string]string{"signature_scheme": scheme,
			"signature_secret": "whsec_ZnV6ei1rZXk=", "signature_header": "X-Signature"}, nil)
		if err != nil {
			return
		}
		h := http.Header{}
		for _, name := range []string{HeaderStandardID, HeaderSvixID} {
			h.Set(name, id)
		}
		for _, name := range []string{HeaderStandardTimestamp, HeaderSlackTimestamp, HeaderZendeskTimestamp} {
			h.Set(name, ts)
		}
		for _, name := range []string{HeaderStandardSignature, HeaderSlackSignature, HeaderStripeSignature, HeaderZendeskSignature, "X-Signature"} {
			h.Set(name, sig)
		}
		if r := Check(in, h, body, Options{Now: time.Unix(1614265330, 0)}); r.Outcome == Pass {
			t.Fatalf("a %s request passed with a fuzzed signature %q", scheme, sig)
		}
	})
}

// TestHandshakes: Slack's url_verification is answered with its challenge
// once the Slack signature passes (never before); Microsoft Graph's
// validation only for integrations that allow it.
func TestHandshakes(t *testing.T) {
	slack := schemeIntegration(t, map[string]string{"signature_scheme": "slack", "signature_secret": "k"})
	now := time.Unix(1531420618, 0)
	signed := func(body string) http.Header {
		return headers("X-Slack-Request-Timestamp", "1531420618", "X-Slack-Signature", "v0="+hmacHex("k", "v0:1531420618:"+body))
	}
	const challenge = `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
	for _, tc := range []struct {
		name   string
		h      http.Header
		body   string
		want   Outcome
		status int
		text   string
	}{
		{"signed challenge", signed(challenge), challenge, Handshake, 200, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"},
		{"unsigned challenge", headers(), challenge, SchemeSignatureMissing, 401, ""},
		{"wrongly signed challenge", signed(challenge + " "), challenge, SchemeSignatureInvalid, 401, ""},
		{"challenge with a line break", signed(`{"type":"url_verification","challenge":"a\nb"}`), `{"type":"url_verification","challenge":"a\nb"}`, Handshake, 400, ""},
		{"an event", signed(`{"type":"event_callback","event_id":"Ev1"}`), `{"type":"event_callback","event_id":"Ev1"}`, Pass, 0, ""},
	} {
		r := Check(slack, tc.h, []byte(tc.body), Options{Now: now, FilteredStatus: 200})
		if r.Outcome != tc.want || r.Status != tc.status || r.Text != tc.text {
			t.Errorf("%s: %+v, want %s %d %q", tc.name, r, tc.want, tc.status, tc.text)
		}
	}

	graph := schemeIntegration(t, map[string]string{"graph_validation": "true"})
	other := schemeIntegration(t, map[string]string{"event_field": "type"})
	for _, tc := range []struct {
		name  string
		in    *integration.Integration
		query string
		token string
		ok    bool
	}{
		{"graph validation", graph, "validationToken=Validation%3A+Testing+client+application", "Validation: Testing client application", true},
		{"no token", graph, "", "", false},
		{"another parameter", graph, "x=validationToken", "", false},
		{"token twice", graph, "validationToken=a&validationToken=b", "", false},
		{"token with a line break", graph, "validationToken=a%0Ab", "a\nb", false},
		{"not allowed", other, "validationToken=abc", "", false},
		{"no sender fields", &integration.Integration{ID: "x"}, "validationToken=abc", "", false},
	} {
		token, ok := GraphValidation(tc.in, tc.query)
		if ok != tc.ok || (ok && token != tc.token) {
			t.Errorf("%s: %q %v, want %q %v", tc.name, token, ok, tc.token, tc.ok)
		}
	}
}

// TestEverySchemeChecked: every scheme of integration.Schemes has its own
// check, which finds a request without its headers missing a signature
// (checkScheme's fallback, for a scheme it does not know, answers invalid).
func TestEverySchemeChecked(t *testing.T) {
	for _, scheme := range integration.Schemes {
		fields := map[string]string{"is_enabled": "true", "resource_type": "workflow", "resource_id": "wf",
			"signature_scheme": scheme, "signature_secret": "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "signature_header": "X-Sig"}
		in := schemeIntegration(t, fields)
		got := checkScheme(in.Sender, http.Header{}, []byte("{}"), time.Now())
		if got.Outcome != SchemeSignatureMissing {
			t.Errorf("scheme %s: a request without its headers is %s, want %s", scheme, got.Outcome, SchemeSignatureMissing)
		}
	}
}
