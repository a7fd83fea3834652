// Package dispatch triggers what a webhook names by calling the CodeMie API
// (docs/codemie-api.md section 4): an assistant or a workflow with the
// calls the CodeMie backend's own webhook makes, a datasource through the
// API's reindex endpoint (the backend reindexes in its own process). Each attempt ends in a
// Result that says whether it succeeded, may be retried, or failed for good.
package dispatch

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/net/http/httpguts"

	"github.com/codemie-edge/caddy-webhooks/internal/answer"
	"github.com/codemie-edge/caddy-webhooks/internal/headers"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

// Job is one webhook delivery to trigger.
type Job struct {
	WebhookID    string
	ResourceType string
	ResourceID   string
	UserID       string
	// DeliveryID identifies the delivery across attempts; it is sent as
	// Idempotency-Key and X-Request-ID so that CodeMie can drop repeats.
	DeliveryID string
	// Body is the webhook's raw body.
	Body []byte
	// ContentType is the request's Content-Type: a form-encoded GitHub
	// delivery's text is its payload field, not the raw form.
	ContentType string
	// Forward holds, with Config.Forward, the request headers that
	// CodeMie's own webhook needs to verify the delivery again: the JSON
	// of a map of header names to values, sealed for the webhook id
	// ("enc:v1:...") when a secrets key is configured, since it may hold
	// secrets (a GitLab token, a secure header).
	Forward string
	// TraceParent is the W3C traceparent of the span that accepted the
	// delivery, when it was traced: each attempt's span links to it.
	TraceParent string
}

// Class says what an attempt's outcome means for the next one.
type Class int

// Classes of results.
const (
	// Success: the resource was triggered.
	Success Class = iota
	// Retryable: a network error, a timeout, 408, 429 or 5xx; try again later.
	Retryable
	// Final: anything else (other 4xx, an unsupported resource); retrying
	// the same request cannot help.
	Final
)

func (c Class) String() string {
	switch c {
	case Success:
		return "success"
	case Retryable:
		return "retryable"
	}
	return "final"
}

// Result is the outcome of one attempt.
type Result struct {
	Class Class
	// Step names the call that decided the result, such as
	// "create workflow execution".
	Step string
	// Status is CodeMie's HTTP status for that call; 0 when there was none.
	Status int
	// Reason is a short, secret-free explanation for logs and dead letters.
	Reason string
	// RetryAfter is CodeMie's Retry-After, if it sent one.
	RetryAfter time.Duration
	// Answer, when set, is what the webhook's sender must be told
	// (docs/codemie-api.md section 3): 400 for an unsupported resource
	// type, 403 for a datasource type that cannot be reindexed.
	Answer *Answer
	// Warning notes a failed call that did not fail the attempt, such as
	// renaming a conversation.
	Warning string
}

// Answer is an HTTP status and {"detail":...} text for the sender.
type Answer struct {
	Status int
	Detail string
}

// UnsupportedAnswer is the backend's answer for a resource type that
// cannot be dispatched.
func UnsupportedAnswer(resourceType string) *Answer {
	return &Answer{Status: http.StatusBadRequest, Detail: answer.UnsupportedResourceType(resourceType)}
}

// Tokens supplies the Authorization header's bearer token.
type Tokens interface {
	// Token returns a valid token for calls made for owner (the
	// integration's user_id), or a *TokenError. A service account's
	// token is the same for every owner.
	Token(ctx context.Context, owner string) (string, error)
	// Invalidate drops a token the API refused, so the next call for
	// owner gets a new one, and reports whether it can be a new one: a
	// static token cannot.
	Invalidate(owner, token string) (renewed bool)
}

// Config says where the CodeMie API is and how to call it.
type Config struct {
	// BaseURL is the API's base, such as http://codemie-api:8080.
	BaseURL *url.URL
	// Tokens authorizes calls; nil sends no Authorization header.
	Tokens Tokens
	// Timeout bounds each call.
	Timeout time.Duration
	// Header is added to every call.
	Header http.Header
	// Client sends the calls.
	Client *http.Client
	// Forward hands each delivery to CodeMie's own webhook endpoint,
	// POST /v1/webhooks/{id}, with its body and Job.Forward's headers,
	// instead of calling the resource APIs: CodeMie verifies it again and
	// triggers as the owner itself.
	Forward bool
	// Keys open sealed Job.Forward values.
	Keys *seal.Keys
}

// Client calls the CodeMie API.
type Client struct {
	cfg Config
}

// New returns a client for cfg.
func New(cfg Config) *Client {
	return &Client{cfg: cfg}
}

// maxResponse bounds how much of an answer is read, in bytes.
const maxResponse = 1 << 20

// maxResponseHeader bounds an answer's headers, in bytes.
const maxResponseHeader = 64 << 10

// MaxReason is the most bytes a Result's Reason or Warning keeps. Part of
// a reason can be a peer's text (Go's transport quotes a malformed status
// line whole, megabytes of it), and reasons go to logs, the delivery log
// and dead letters, which are bounded by count, not by size.
const MaxReason = 512

// ShortReason returns s cut to at most MaxReason bytes, at a character
// boundary, with "..." marking the cut.
func ShortReason(s string) string {
	if len(s) <= MaxReason {
		return s
	}
	cut := MaxReason - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Dispatch makes one attempt at triggering job's resource.
func (c *Client) Dispatch(ctx context.Context, job Job) Result {
	res := c.attempt(ctx, job)
	res.Reason, res.Warning = ShortReason(res.Reason), ShortReason(res.Warning)
	return res
}

// attempt is Dispatch's attempt, its reasons not yet cut.
func (c *Client) attempt(ctx context.Context, job Job) Result {
	if c.cfg.Forward {
		return c.forward(ctx, job)
	}
	switch job.ResourceType {
	case integration.ResourceAssistant:
		return c.assistant(ctx, job)
	case integration.ResourceWorkflow:
		return c.workflow(ctx, job)
	case integration.ResourceDatasource:
		return c.datasource(ctx, job)
	}
	return Result{Class: Final, Step: "dispatch", Reason: "unsupported resource type", Answer: UnsupportedAnswer(job.ResourceType)}
}

// call is one request to the API and what came back.
type call struct {
	step   string
	method string
	path   string // escaped path and query, relative to the base URL
	body   any    // marshalled as JSON; nil sends no body
	// forwarded, when set, is sent instead: a delivery's own body and
	// headers, with no token of the edge's.
	forwarded *delivered
}

// delivered is a webhook delivery as its sender sent it.
type delivered struct {
	body   []byte
	header http.Header
}

// do sends c and decodes a 2xx answer into out (if not nil). A failed
// call returns its Result; ok says the call succeeded.
func (c *Client) do(ctx context.Context, job Job, cl call, out any) (res Result, ok bool) {
	if c.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	res = Result{Step: cl.step}
	req, err := c.request(ctx, job, cl)
	var te *TokenError
	switch {
	case errors.As(err, &te):
		res.Class, res.Step, res.Reason = Final, "authenticate", "authenticate: "+te.Error()
		if te.Retryable {
			res.Class = Retryable
		}
		return res, false
	case err != nil:
		res.Class, res.Reason = Final, cl.step+": "+err.Error()
		return res, false
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		res.Class, res.Reason = Retryable, cl.step+": "+NetworkReason(err)
		return res, false
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	res.Class = classify(resp.StatusCode)
	if res.Class != Success {
		if res.Class == Retryable {
			res.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
		}
		if resp.StatusCode == http.StatusUnauthorized && c.cfg.Tokens != nil && cl.forwarded == nil &&
			c.cfg.Tokens.Invalidate(job.UserID, strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")) {
			// A token that expired early or was revoked: the next attempt
			// carries a new one.
			res.Class = Retryable
		}
		res.Reason = fmt.Sprintf("%s: CodeMie answered %d", cl.step, resp.StatusCode)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
		return res, false
	}
	if out != nil {
		answer := &io.LimitedReader{R: resp.Body, N: maxResponse + 1}
		if err := json.NewDecoder(answer).Decode(out); err != nil {
			res.Class, res.Reason = answerError(cl.step, err, answer.N == 0)
			return res, false
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	return res, true
}

func (c *Client) request(ctx context.Context, job Job, cl call) (*http.Request, error) {
	var body io.Reader
	if cl.body != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(cl.body); err != nil {
			return nil, fmt.Errorf("encoding the request: %v", err)
		}
		body = bytes.NewReader(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	}
	if cl.forwarded != nil {
		body = bytes.NewReader(cl.forwarded.body)
	}
	base := c.cfg.BaseURL
	u, err := base.Parse(strings.TrimSuffix(base.EscapedPath(), "/") + cl.path)
	if err != nil {
		return nil, fmt.Errorf("building the URL: %v", err)
	}
	if u.Scheme != base.Scheme || u.Host != base.Host {
		// Never send the token to another host, whatever the path holds.
		return nil, errors.New("building the URL: it leaves the API's host")
	}
	for name, v := range map[string]string{"user-id": job.UserID, "Idempotency-Key": job.DeliveryID} {
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, fmt.Errorf("building the request: %s is not a valid header value", name)
		}
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building the request: %v", err)
	}
	for name, values := range c.cfg.Header {
		req.Header[name] = values
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if job.UserID != "" {
		req.Header.Set("user-id", job.UserID)
	}
	req.Header.Set("X-Request-ID", job.DeliveryID)
	req.Header.Set("Idempotency-Key", job.DeliveryID)
	// The attempt's span, if ctx has one, is the call's parent.
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	if cl.forwarded != nil {
		for name, values := range cl.forwarded.header {
			if _, set := req.Header[name]; set && !headers.Named(headers.Forwarded, name) {
				// An integration's secure header never replaces one the edge
				// sends (user-id, the operator's headers, the ids): its
				// record may be a CodeMie user's.
				continue
			}
			req.Header[name] = values
		}
		return req, nil // the webhook endpoint takes no token: it checks the sender's own
	}
	if c.cfg.Tokens != nil {
		token, err := c.cfg.Tokens.Token(ctx, job.UserID)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		// CodeMie behind oauth2-proxy (IDP_PROVIDER keycloak) reads the
		// caller's token from the header the proxy injects; the edge
		// calls the API directly, past the proxy.
		req.Header.Set("X-Auth-Request-Access-Token", token)
	}
	return req, nil
}

// classify maps CodeMie's status to a Class.
func classify(status int) Class {
	switch {
	case status >= 200 && status < 300:
		return Success
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return Retryable
	}
	return Final
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// answerError classifies a 2xx answer that could not be decoded: one
// that is not the JSON expected, or is longer than maxResponse (tooLong),
// is final; one cut short (the connection lost, the call's timeout, a
// stop) is retried.
func answerError(step string, err error, tooLong bool) (Class, string) {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case tooLong:
		return Final, fmt.Sprintf("%s: CodeMie's answer is longer than %d bytes", step, maxResponse)
	case errors.Is(err, io.EOF) || errors.As(err, &syntax) || errors.As(err, &typ):
		return Final, step + ": CodeMie's answer is not the expected JSON"
	}
	return Retryable, step + ": reading CodeMie's answer: " + NetworkReason(err)
}

// NetworkReason describes a failed round trip by its kind, in words of its
// own: never the URL, nor what the peer sent. Go's transport quotes a
// malformed answer, and a peer that echoes the request would have the
// Authorization header, or the token form's client secret, quoted back
// into logs and dead letters; what Go quotes is left out.
func NetworkReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var (
		ne     net.Error
		dns    *net.DNSError
		cert   *tls.CertificateVerificationError
		alert  tls.AlertError
		record tls.RecordHeaderError
		errno  syscall.Errno
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return "looking up the host: no such host"
		}
		return "looking up the host failed"
	case errors.As(err, &cert):
		return "TLS: the server's certificate was not accepted"
	case errors.As(err, &alert), errors.As(err, &record):
		return "TLS: the handshake failed"
	case errors.As(err, &errno):
		return errno.Error() // the system's own words: connection refused, reset by peer
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed before the answer ended"
	}
	text, _, _ := strings.Cut(err.Error(), `"`)
	return ShortReason(strings.TrimRight(text, ": "))
}

// HTTPClient is the client that every configuration shares, so that a
// config reload keeps the pooled connections. It does not follow redirects:
// a redirect is a final failure, never a silent change of endpoint.
var HTTPClient = &http.Client{
	Transport: &http.Transport{
		Proxy:             http.ProxyFromEnvironment,
		DialContext:       (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2: true,
		// Dispatches wait seconds to minutes on CodeMie, so an instance
		// may hold hundreds of calls at once (workers): keep their
		// connections for the next calls rather than dial again.
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Answers are read up to maxResponse; their headers, up to this
		// (Go's default is 10 MiB, for each of hundreds of calls).
		MaxResponseHeaderBytes: maxResponseHeader,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
