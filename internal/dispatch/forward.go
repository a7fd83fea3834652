package dispatch

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/codemie-edge/caddy-webhooks/internal/headers"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

// forward hands job to CodeMie's own webhook endpoint, POST
// /v1/webhooks/{id} (the API's service address, not the public ingress,
// which points at the edge), with the body and the headers CodeMie needs
// to verify it again. CodeMie answers once it has queued the trigger in
// its own process, which then acts as the owner. 2xx is delivered; 408,
// 429 and 5xx are retried (honouring Retry-After: CodeMie rate-limits its
// webhooks too); other 4xx are final.
func (c *Client) forward(ctx context.Context, job Job) Result {
	const step = "forward to CodeMie's webhook"
	id, err := segment(job.WebhookID)
	if err != nil {
		return unbuildable(step, "the webhook id", err)
	}
	header, err := c.forwardedHeader(job)
	if err != nil {
		return unbuildable(step, "the forwarded headers", err)
	}
	res, _ := c.do(ctx, job, call{step: step, method: http.MethodPost, path: "/v1/webhooks/" + id,
		forwarded: &delivered{body: job.Body, header: header}}, nil)
	return res
}

// forwardedHeader opens job.Forward.
func (c *Client) forwardedHeader(job Job) (http.Header, error) {
	if job.Forward == "" {
		return http.Header{}, nil
	}
	raw, err := c.cfg.Keys.Open(job.WebhookID, job.Forward)
	if err != nil {
		return nil, err
	}
	var values map[string]string
	if err := json.Unmarshal(raw, &values); err != nil {
		return nil, err
	}
	header := make(http.Header, len(values))
	for name, v := range values {
		header.Set(name, v)
	}
	return header, nil
}

// SealForward returns the Job.Forward value of a request's headers: the
// headers.Forwarded and the extra ones (an integration's secure header)
// that it carries, as JSON, sealed for webhook id when there are keys (in
// clear without: docs/reference.md says so).
func SealForward(id string, h http.Header, extra []string, keys *seal.Keys) string {
	values := map[string]string{}
	for _, name := range append(headers.Forwarded, extra...) {
		if v := h.Get(name); v != "" {
			values[http.CanonicalHeaderKey(name)] = v
		}
	}
	raw, _ := json.Marshal(values)
	if keys == nil {
		return string(raw)
	}
	return keys.Seal(id, raw)
}
