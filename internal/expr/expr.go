// Package expr evaluates an integration's filter, a CEL expression, and
// renders its prompt, a template, over a delivery: its event, action, JSON
// body, non-secret headers and the webhook's own fields. Both are compiled
// once, when their record is loaded; an expression is evaluated within a
// cost limit, a prompt is capped in size, and neither reaches anything
// outside the request.
package expr

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	celenv "cel.dev/cel-go/common/env"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types/ref"
	"github.com/tidwall/gjson"
)

// MaxCost bounds one evaluation, in CEL's cost units (about one per value
// visited; equalities and matches as cost.go counts them): a list
// comprehension over a large body stops there, with an error, rather than
// holding the request.
const MaxCost = 100_000

// MaxSourceBytes bounds an expression's length.
const MaxSourceBytes = 4096

// MaxEvalTime bounds one evaluation's time, whatever its cost counts: a
// comprehension still going then is stopped, with an error. The cost
// limit stops any evaluation known of long before (the slowest known,
// lists joined in a loop, at about 160 ms); this is for the ones it does
// not foresee, with room for a loaded machine.
const MaxEvalTime = 2 * time.Second

// evalTime is MaxEvalTime, but in a test of it.
var evalTime = MaxEvalTime

// MaxBodyFields bounds the fields of the body a filter, or a prompt,
// reads: each is looked for in the whole body, once an evaluation.
const MaxBodyFields = 32

// MaxBodyValues bounds the values a filter is given of the body (those of
// the fields it reads, or of all of it), counted before they are made:
// 25 MB of [{},{},...] took 5 s and 1.2 GB to make, before any cost was
// counted, and CEL's cost tracking slows down with each turn of a loop
// (16,000 turns took 0.9 s).
const MaxBodyValues = 10_000

// MaxLiteralNesting bounds how deeply a filter's list and map literals
// nest: CEL's type checker takes time of the cube of the depth (a map
// nested 249 deep, 1 KB, took 5.7 s and 3.5 GB to compile).
const MaxLiteralNesting = 16

// Vars are what an expression sees.
type Vars struct {
	// Event is the sender's event: the X-GitHub-Event or X-Gitlab-Event
	// header, or a signature scheme's event type; "" when there is none.
	Event string
	// Action is the body's action (GitLab: object_attributes.action).
	Action string
	// Body is the JSON document (a form-encoded GitHub delivery's payload
	// field), valid JSON; nil when the body is not JSON.
	Body []byte
	// Headers are the request's headers that carry no secret.
	Headers http.Header
	// Webhook are the webhook's own fields: id, resource_type,
	// resource_id, user_id.
	Webhook map[string]string
}

// get is the body's value at a gjson path.
func (v Vars) get(path string) gjson.Result { return gjson.GetBytes(v.Body, path) }

// Filter is a compiled expression that says whether a delivery is taken.
type Filter struct {
	src string
	prg cel.Program
	// reads are the body's fields the expression selects (body.a.b), so
	// that only they are parsed; whole says it uses the body otherwise
	// (body itself, body[k]) and needs all of it.
	reads [][]string
	whole bool
	// loops says it has a comprehension (exists, all, map, ...), the only
	// place MaxEvalTime is looked at.
	loops bool
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
		env, envErr = cel.NewCustomEnv(
			cel.StdLib(cel.StdLibSubset(&celenv.LibrarySubset{ExcludeFunctions: []*celenv.Function{{Name: overloads.Matches}}})),
			matchesFunction,
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
	parsed, issues := e.Parse(src)
	if issues != nil && issues.Err() != nil {
		return nil, errors.New(strings.ReplaceAll(issues.Err().Error(), "\n", " "))
	}
	if literalDepth(parsed.NativeRep().Expr()) > MaxLiteralNesting {
		return nil, fmt.Errorf("lists and maps nested more than %d deep", MaxLiteralNesting)
	}
	ast, issues := e.Check(parsed)
	if issues != nil && issues.Err() != nil {
		return nil, errors.New(strings.ReplaceAll(issues.Err().Error(), "\n", " "))
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("is a %s, not a boolean", ast.OutputType())
	}
	prg, err := e.Program(ast, cel.CostLimit(MaxCost), cel.CostTracking(deepCost{}), cel.InterruptCheckFrequency(interruptEvery))
	if err != nil {
		return nil, err
	}
	f := &Filter{src: src, prg: prg, loops: hasLoop(ast.NativeRep().Expr())}
	f.reads, f.whole = bodyReads(ast.NativeRep().Expr())
	if len(f.reads) > MaxBodyFields {
		return nil, fmt.Errorf("reads %d fields of the body, more than %d", len(f.reads), MaxBodyFields)
	}
	found, err := patternsOf(ast.NativeRep().Expr())
	if err != nil {
		return nil, err
	}
	for _, p := range found {
		if _, err := patterns.get(p); err != nil {
			return nil, fmt.Errorf("matches %q: %v", p, err)
		}
	}
	return f, nil
}

// bodyReads returns the chains of fields selected from body that no other
// selection extends (body.a.b.c, not body.a.b), each once and none that
// another one read holds (body.a, not body.a.b as well), and whether body
// is also used otherwise: each chain's value is parsed for every
// evaluation, and 400 reads of the same megabyte took a minute.
func bodyReads(root celast.Expr) ([][]string, bool) {
	extended := map[int64]bool{}
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() == celast.SelectKind {
			extended[e.AsSelect().Operand().ID()] = true
		}
	}))
	var reads [][]string
	whole := false
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		switch {
		case extended[e.ID()]:
		case e.Kind() == celast.IdentKind && e.AsIdent() == "body":
			whole = true
		case e.Kind() == celast.SelectKind:
			var chain []string
			for e.Kind() == celast.SelectKind {
				chain = append([]string{e.AsSelect().FieldName()}, chain...)
				e = e.AsSelect().Operand()
			}
			if e.Kind() == celast.IdentKind && e.AsIdent() == "body" {
				reads = append(reads, chain)
			}
		}
	}))
	return outermost(reads), whole
}

// outermost returns each chain of reads once, but those another one is a
// prefix of.
func outermost(reads [][]string) [][]string {
	slices.SortStableFunc(reads, func(a, b []string) int { return cmp.Compare(len(a), len(b)) })
	var kept [][]string
	for _, chain := range reads {
		if !slices.ContainsFunc(kept, func(k []string) bool { return slices.Equal(k, chain[:len(k)]) }) {
			kept = append(kept, chain)
		}
	}
	return kept
}

// interruptEvery is how many iterations of a comprehension run between two
// looks at MaxEvalTime.
const interruptEvery = 100

// Source is the expression as written.
func (f *Filter) Source() string { return f.src }

// Allows evaluates the filter over v. An error (a missing field, a wrong
// type, the cost limit) is returned as such: the caller drops the delivery.
func (f *Filter) Allows(v Vars) (bool, error) {
	vars, err := v.activation(f)
	if err != nil {
		return false, err
	}
	out, err := f.eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("gave %v, not a boolean", out.Value())
	}
	return b, nil
}

// eval runs the program over vars, within MaxEvalTime when it has loops
// (without them, the deadline is never looked at: 10 allocations and
// about a microsecond saved).
func (f *Filter) eval(vars map[string]any) (ref.Val, error) {
	if !f.loops {
		out, _, err := f.prg.Eval(vars)
		return out, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), evalTime)
	defer cancel()
	out, _, err := f.prg.ContextEval(ctx, vars)
	return out, err
}

// hasLoop reports whether root has a comprehension.
func hasLoop(root celast.Expr) bool {
	found := false
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		found = found || e.Kind() == celast.ComprehensionKind
	}))
	return found
}

// body is the document as the filter reads it: only the fields it
// selects, each parsed on its own, unless it needs the whole; nothing
// when it reads none, or reads fields of what is no object. It fails when
// that is more than MaxBodyValues values.
func (f *Filter) body(v Vars) (any, error) {
	doc := v.Body
	switch {
	case len(doc) == 0:
		return nil, nil
	case f.whole:
		if n := jsonValues(doc, MaxBodyValues); n > MaxBodyValues {
			return nil, fmt.Errorf("the body holds more than %d values", MaxBodyValues)
		}
		var body any
		_ = json.Unmarshal(doc, &body) // not JSON: body is null
		return body, nil
	case len(f.reads) == 0 || !isObject(doc):
		return nil, nil
	}
	body := map[string]any{}
	values := 0
	for _, chain := range f.reads {
		r := v.get(gjsonPath(chain))
		if !r.Exists() {
			continue
		}
		if values += jsonValues(r.Raw, MaxBodyValues-values); values > MaxBodyValues {
			return nil, fmt.Errorf("the fields of the body read hold more than %d values", MaxBodyValues)
		}
		place(body, chain, r.Value())
	}
	return body, nil
}

// jsonValues counts the values of doc, JSON, up to limit+1 (more are
// counted as limit+1): one, and one more for each comma and each opening
// bracket or brace outside strings.
func jsonValues[T string | []byte](doc T, limit int) int {
	n, quoted := 1, false
	for i := 0; i < len(doc) && n <= limit; i++ {
		switch c := doc[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ',' || c == '[' || c == '{'):
			n++
		}
	}
	return min(n, limit+1)
}

// literalDepth is how deeply the list, map and message literals of e
// nest, as parsed (before the type checker, whose time grows with the
// cube of that depth, sees them).
func literalDepth(e celast.Expr) int {
	var children []celast.Expr
	own := 0
	switch e.Kind() {
	case celast.CallKind:
		if c := e.AsCall(); c.IsMemberFunction() {
			children = append(children, c.Target())
		}
		children = append(children, e.AsCall().Args()...)
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		children = []celast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()}
	case celast.SelectKind:
		children = []celast.Expr{e.AsSelect().Operand()}
	case celast.ListKind:
		own, children = 1, e.AsList().Elements()
	case celast.MapKind:
		own = 1
		for _, entry := range e.AsMap().Entries() {
			children = append(children, entry.AsMapEntry().Key(), entry.AsMapEntry().Value())
		}
	case celast.StructKind:
		own = 1
		for _, field := range e.AsStruct().Fields() {
			children = append(children, field.AsStructField().Value())
		}
	}
	deepest := 0
	for _, c := range children {
		deepest = max(deepest, literalDepth(c))
	}
	return own + deepest
}

// isObject reports whether doc, JSON, is an object.
func isObject(doc []byte) bool {
	trimmed := bytes.TrimLeft(doc, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

// place sets the value at chain in m, through objects it creates; a value
// already there (an object read whole) holds it already.
func place(m map[string]any, chain []string, value any) {
	for _, key := range chain[:len(chain)-1] {
		next, ok := m[key]
		if !ok {
			child := map[string]any{}
			m[key] = child
			m = child
			continue
		}
		if m, ok = next.(map[string]any); !ok {
			return
		}
	}
	if _, ok := m[chain[len(chain)-1]]; !ok {
		m[chain[len(chain)-1]] = value
	}
}

// Path returns a path written with dots as a gjson path that does only
// that: each part a key, an array's index, or # (an array's length; with
// more after it, each element's value), at most one #; \ takes the next
// character as it is (a\.b is the key "a.b", \# the key "#"). A path
// with an empty part, or more than one #, is refused. gjson's modifiers,
// queries, wildcards, multipaths and JSON Lines are not reached: an
// integration's author, a CodeMie user through sync, could make one
// request cost gigabytes with them (@pretty's indent, [@this,@this,...])
// or recurse once per level of a deep body.
func Path(dotted string) (string, error) {
	var b strings.Builder
	counts := 0
	for _, part := range pathParts(dotted) {
		switch {
		case part.key == "" && !part.count:
			return "", errors.New("an empty part (a dot at an end, or two together)")
		case part.count:
			if counts++; counts > 1 {
				return "", errors.New("more than one #")
			}
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if part.count {
			b.WriteByte('#')
			continue
		}
		escapeKey(&b, part.key)
	}
	return b.String(), nil
}

// pathPart is one part of a path written with dots: a key, or # as
// written, unescaped (count).
type pathPart struct {
	key   string
	count bool
}

// pathParts returns the parts of dotted, its escapes read.
func pathParts(dotted string) []pathPart {
	var parts []pathPart
	var key strings.Builder
	escaped := false
	end := func() {
		k := key.String()
		parts = append(parts, pathPart{key: k, count: k == "#" && !escaped})
		key.Reset()
		escaped = false
	}
	for i := 0; i < len(dotted); i++ {
		switch c := dotted[i]; {
		case c == '\\' && i+1 < len(dotted):
			i++
			key.WriteByte(dotted[i])
			escaped = true
		case c == '.':
			end()
		default:
			key.WriteByte(c)
		}
	}
	end()
	return parts
}

// gjsonPath is chain as a gjson path, each part a key.
func gjsonPath(chain []string) string {
	var b strings.Builder
	for i, key := range chain {
		if i > 0 {
			b.WriteByte('.')
		}
		escapeKey(&b, key)
	}
	return b.String()
}

// escapeKey writes key with every character gjson gives a meaning escaped.
func escapeKey(b *strings.Builder, key string) {
	for _, c := range key {
		if strings.ContainsRune(`.*?|#@\!=<>%[]{}(),:`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
}

// activation is v as CEL's variables, the body as f reads it.
func (v Vars) activation(f *Filter) (map[string]any, error) {
	body, err := f.body(v)
	if err != nil {
		return nil, err
	}
	headers := make(map[string]string, len(v.Headers))
	for name, values := range v.Headers {
		headers[name] = strings.Join(values, ", ")
	}
	webhook := v.Webhook
	if webhook == nil {
		webhook = map[string]string{}
	}
	return map[string]any{"event": v.Event, "action": v.Action, "body": body, "headers": headers, "webhook": webhook}, nil
}
