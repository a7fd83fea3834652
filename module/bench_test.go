package module

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/delivery"
	"github.com/codemie-edge/caddy-webhooks/internal/guard"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

const benchSecret = "a-webhook-secret-of-usual-length"

// benchBody is a 1 KB GitHub-like payload and its signature.
func benchBody() ([]byte, string) {
	body := append([]byte(`{"action":"opened","pad":"`), bytes.Repeat([]byte("x"), 1024-29)...)
	body = append(body, `"}`...)
	return body, testenv.SignGitHub256(benchSecret, string(body))
}

// provisioned returns a handler provisioned from h's configuration.
func provisioned(b testing.TB, h *Handler) *Handler {
	b.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	h.logger = zap.NewNop() // measure the handler, not the log's output
	b.Cleanup(func() { _ = h.Cleanup(); cancel() })
	return h
}

// serveBench posts the signed body to webhook id n times, each with a
// delivery id of its own, and checks the status.
func serveBench(b *testing.B, h *Handler, id string, sign bool, want int) {
	body, sig := benchBody()
	if !sign {
		sig = "sha256=" + string(bytes.Repeat([]byte("0"), 64))
	}
	req := httptest.NewRequest(http.MethodPost, "/code-assistant-api/v1/webhooks/"+id, nil)
	req.Header.Set("X-Hub-Signature-256", sig)
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("Content-Type", "application/json")
	repl := caddy.NewReplacer()
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	rd := bytes.NewReader(body)
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		rd.Reset(body)
		req.Body = readCloser{rd}
		req.ContentLength = int64(len(body))
		req.Header["X-Github-Delivery"] = []string{"bench-" + strconv.Itoa(i)}
		clear(w.h)
		_ = h.ServeHTTP(w, req, nil)
		if w.status != want {
			b.Fatalf("status %d, want %d", w.status, want)
		}
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// discardWriter keeps the status and throws the body away.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

func writeBenchIntegrations(b testing.TB) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "integrations.json")
	err := os.WriteFile(path, []byte(`[{"webhook_id":"bench","is_enabled":true,"resource_type":"workflow","resource_id":"wf",
		"github_webhook_secret":"`+benchSecret+`","github_event_filter":"push,pull_request.opened"}]`), 0o600)
	if err != nil {
		b.Fatal(err)
	}
	return path
}

// nopIntake accepts every webhook without Redis.
type nopIntake struct{}

func (nopIntake) OneRoundTrip() bool { return true }
func (nopIntake) Admit(context.Context, redisconn.Bound, guard.Config, string, guard.Delivery, delivery.Entry) (guard.Decision, error) {
	return guard.Decision{Verdict: guard.Admit}, nil
}
func (nopIntake) Enqueue(context.Context, redisconn.Bound, delivery.Entry) error { return nil }

// BenchmarkHandlerAcceptedNoRedis is an accepted 1 KB GitHub webhook
// through the whole handler, everything but the Redis round trip: id,
// cache hit, body, signature, event filter, entry.
func BenchmarkHandlerAcceptedNoRedis(b *testing.B) {
	h := provisioned(b, &Handler{IntegrationsFile: writeBenchIntegrations(b), Upstream: &Upstream{URL: "http://127.0.0.1:1"}})
	h.intake = nopIntake{}
	serveBench(b, h, "bench", true, http.StatusOK)
}

// BenchmarkHandlerAcceptedRedis is the same with a real Redis: one EVALSHA
// that rate-limits, dedups and enqueues.
func BenchmarkHandlerAcceptedRedis(b *testing.B) {
	r := testenv.StartRedis(b)
	r.Client.HSet(context.Background(), "codemie:webhooks:{bench}", "is_enabled", "true", "resource_type", "workflow",
		"resource_id", "wf", "github_webhook_secret", benchSecret, "github_event_filter", "push,pull_request.opened")
	cfg := &Handler{Redis: &RedisConfig{}, RateLimit: &RateLimit{}, Workers: 1,
		Upstream: &Upstream{URL: "http://127.0.0.1:1"}, Retry: &Retry{Attempts: 1}}
	cfg.Redis.Addrs = []string{r.Addr}
	h := provisioned(b, cfg)
	serveBench(b, h, "bench", true, http.StatusOK)
}

// BenchmarkHandlerRejected is a request with a wrong signature: no Redis.
func BenchmarkHandlerRejected(b *testing.B) {
	h := provisioned(b, &Handler{IntegrationsFile: writeBenchIntegrations(b), Upstream: &Upstream{URL: "http://127.0.0.1:1"}})
	serveBench(b, h, "bench", false, http.StatusUnauthorized)
}

// BenchmarkWebhookID is the id's parse and check.
func BenchmarkWebhookID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !integration.ValidID(webhookID("/code-assistant-api/v1/webhooks/gh-pr-review-42")) {
			b.Fatal("invalid")
		}
	}
}
