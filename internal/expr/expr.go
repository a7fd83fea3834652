// Package expr evaluates an integration's filter, a CEL expression, and
// renders its prompt, a template, over a delivery: its event, action, JSON
// body, non-secret headers and the webhook's own fields. Both are compiled
// once, when their record is loaded; an expression is evaluated within a
// cost limit, a prompt is capped in size, and neither reaches anything
// outside the request.
package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
)

// MaxCost bounds one evaluation, in CEL's cost units (about one per value
// visited): a list comprehension over a large body stops there, with an
// error, rather than holding the request.
const MaxCost = 100_000

// MaxSourceBytes bounds an expression's length.
const MaxSourceBytes = 4096

// Vars are what an expression sees.
type Vars struct {
	// Event is the sender's event: the X-GitHub-Event or X-Gitlab-Event
	// header, or a signature scheme's event type; "" when there is none.
	Event string
	// Action is the body's action (GitLab: object_attributes.action).
	Action string
	// Body is the JSON document (a form-encoded GitHub delivery's payload
	// field); nil when the body is not JSON.
	Body []byte
	// Headers are the request's headers that carry no secret.
	Headers http.Header
	// Webhook are the webhook's own fields: id, resource_type,
	// resource_id, user_id.
	Webhook map[string]string
}

// Filter is a compiled expression that says whether a delivery is taken.
type Filter struct {
	src string
	prg cel.Program
}

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

// environment is the one CEL environment: its variables, and nothing that
// reaches outside the request.
func environment() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(
			cel.Variable("event", cel.StringType),
			cel.Variable("action", cel.StringType),
			cel.Variable("body", cel.DynType),
			cel.Variable("headers", cel.MapType(cel.StringType, cel.StringType)),
			cel.Variable("webhook", cel.MapType(cel.StringType, cel.StringType)),
			cel.CrossTypeNumericComparisons(true),
		)
	})
	return env, envErr
}

// CompileFilter compiles src, which must be a boolean expression.
func CompileFilter(src string) (*Filter, error) {
	if len(src) > MaxSourceBytes {
		return nil, fmt.Errorf("longer than %d bytes", MaxSourceBytes)
	}
	e, err := environment()
	if err != nil {
		return nil, err
	}
	ast, issues := e.Compile(src)
	if issues != nil && issues.Err() != nil {
		return nil, errors.New(strings.ReplaceAll(issues.Err().Error(), "\n", " "))
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("is a %s, not a boolean", ast.OutputType())
	}
	prg, err := e.Program(ast, cel.CostLimit(MaxCost))
	if err != nil {
		return nil, err
	}
	return &Filter{src: src, prg: prg}, nil
}

// Source is the expression as written.
func (f *Filter) Source() string { return f.src }

// Allows evaluates the filter over v. An error (a missing field, a wrong
// type, the cost limit) is returned as such: the caller drops the delivery.
func (f *Filter) Allows(v Vars) (bool, error) {
	out, _, err := f.prg.Eval(v.activation())
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("gave %v, not a boolean", out.Value())
	}
	return b, nil
}

// activation is v as CEL's variables.
func (v Vars) activation() map[string]any {
	var body any
	if len(v.Body) > 0 {
		_ = json.Unmarshal(v.Body, &body) // not JSON: body is null
	}
	headers := make(map[string]string, len(v.Headers))
	for name, values := range v.Headers {
		headers[name] = strings.Join(values, ", ")
	}
	webhook := v.Webhook
	if webhook == nil {
		webhook = map[string]string{}
	}
	return map[string]any{"event": v.Event, "action": v.Action, "body": body, "headers": headers, "webhook": webhook}
}
