package dispatch

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/codemie-edge/caddy-webhooks/internal/answer"
	"github.com/codemie-edge/caddy-webhooks/internal/verify"
)

// text is what the resource is given: the body (for a form-encoded
// GitHub delivery, its payload field), as UTF-8 with invalid bytes
// replaced. The signature was checked over the raw bytes.
func text(job Job) string {
	body := job.Body
	if doc, ok := verify.FormPayload(job.ContentType, body); ok {
		body = doc
	}
	return strings.ToValidUTF8(string(body), "\uFFFD")
}

// assistant creates a conversation, names it, and calls the assistant's
// model with the body; if the model call fails, the conversation is deleted.
func (c *Client) assistant(ctx context.Context, job Job) Result {
	id, err := segment(job.ResourceID)
	if err != nil {
		return unbuildable("create conversation", "resource_id", err)
	}
	var created struct {
		ID string `json:"id"`
	}
	res, ok := c.do(ctx, job, call{step: "create conversation", method: http.MethodPost, path: "/v1/conversations",
		body: map[string]string{"initial_assistant_id": job.ResourceID, "folder": "job"}}, &created)
	if !ok {
		return res
	}
	if created.ID == "" {
		return Result{Class: Final, Step: res.Step, Status: res.Status, Reason: "create conversation: CodeMie's answer has no conversation id"}
	}
	conv, err := segment(created.ID)
	if err != nil {
		return unbuildable("create conversation", "the conversation id CodeMie answered", err)
	}

	var warning string
	if res, ok := c.do(ctx, job, call{step: "rename conversation", method: http.MethodPut, path: "/v1/conversations/" + conv,
		body: map[string]string{"name": "Webhook: " + job.ResourceID}}, nil); !ok {
		// As in the backend, a conversation that keeps its default name
		// does not fail the delivery.
		warning = res.Reason
	}

	t := text(job)
	res, ok = c.do(ctx, job, call{step: "call assistant", method: http.MethodPost, path: "/v1/assistants/" + id + "/model",
		body: map[string]any{"conversation_id": created.ID, "text": t, "content_raw": "<p>" + t + "</p>", "stream": false}}, nil)
	if !ok {
		if del, ok := c.do(ctx, job, call{step: "delete conversation", method: http.MethodDelete, path: "/v1/conversations/" + conv}, nil); !ok {
			warning = joinWarnings(warning, del.Reason)
		}
	}
	res.Warning = joinWarnings(warning, res.Warning)
	return res
}

// workflow starts an execution with the body as its input.
func (c *Client) workflow(ctx context.Context, job Job) Result {
	id, err := segment(job.ResourceID)
	if err != nil {
		return unbuildable("create workflow execution", "resource_id", err)
	}
	// Any 2xx: the execution started, whatever its answer says of it.
	res, _ := c.do(ctx, job, call{step: "create workflow execution", method: http.MethodPost,
		path: "/v1/workflows/" + id + "/executions",
		body: map[string]string{"user_input": text(job)}}, nil)
	return res
}

// codeIndexTypes are the backend's code index types (CodeIndexType).
var codeIndexTypes = map[string]bool{"code": true, "summary": true, "chunk-summary": true}

// datasource reads the datasource and starts the reindex its type needs.
func (c *Client) datasource(ctx context.Context, job Job) Result {
	var ds struct {
		IndexType   string `json:"index_type"`
		ProjectName string `json:"project_name"`
		RepoName    string `json:"repo_name"`
		Jira        struct {
			JQL string `json:"jql"`
		} `json:"jira"`
	}
	id, err := segment(job.ResourceID)
	if err != nil {
		return unbuildable("read datasource", "resource_id", err)
	}
	res, ok := c.do(ctx, job, call{step: "read datasource", method: http.MethodGet, path: "/v1/index/" + id}, &ds)
	if !ok {
		return res
	}
	kb := map[string]string{"name": ds.RepoName, "project_name": ds.ProjectName}
	var reindex call
	switch {
	case ds.IndexType == "provider":
		reindex = call{path: "/v1/index/provider/" + id + "/reindex", body: struct{}{}}
	case codeIndexTypes[ds.IndexType]:
		project, err := segment(ds.ProjectName)
		if err != nil {
			return unbuildable("reindex datasource", "the datasource's project_name", err)
		}
		repo, err := segment(ds.RepoName)
		if err != nil {
			return unbuildable("reindex datasource", "the datasource's repo_name", err)
		}
		reindex = call{path: "/v1/application/" + project + "/index/" + repo + "?full_reindex=true", body: struct{}{}}
	case ds.IndexType == "knowledge_base_jira":
		// As CodeMie's own webhook: an incremental reindex with the
		// datasource's stored JQL ("" when it has none). The endpoint
		// requires the field: without it, 422.
		reindex = call{path: "/v1/index/knowledge_base/jira?incremental_reindex=true",
			body: map[string]string{"name": ds.RepoName, "project_name": ds.ProjectName, "jql": ds.Jira.JQL}}
	case ds.IndexType == "knowledge_base_confluence":
		reindex = call{path: "/v1/index/knowledge_base/confluence?full_reindex=true", body: kb}
	case ds.IndexType == "llm_routing_google":
		reindex = call{path: "/v1/index/knowledge_base/google/reindex", body: kb}
	default:
		return Result{Class: Final, Step: "read datasource", Status: res.Status,
			Reason: "datasource type cannot be reindexed by a webhook",
			Answer: &Answer{Status: http.StatusForbidden, Detail: answer.UnsupportedDatasourceType(ds.IndexType)}}
	}
	reindex.step, reindex.method = "reindex datasource", http.MethodPut
	res, _ = c.do(ctx, job, reindex, nil)
	return res
}

func joinWarnings(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// segment escapes one path segment of a call. An empty, "." or ".."
// segment would make the call walk the API's paths ("/v1/workflows/../
// executions" is "/v1/executions"), so it is refused.
func segment(s string) (string, error) {
	switch s {
	case "":
		return "", errors.New("is empty")
	case ".", "..":
		return "", errors.New("is a dot segment")
	}
	return url.PathEscape(s), nil
}

// unbuildable is the result of a call that can never be made: final, since
// no retry builds it.
func unbuildable(step, what string, err error) Result {
	return Result{Class: Final, Step: step, Reason: step + ": " + what + " " + err.Error() + ": the call cannot be built"}
}
