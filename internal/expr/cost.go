package expr

import (
	"regexp"
	"regexp/syntax"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// The cost of an evaluation is CEL's own, but for the calls whose work it
// does not see, whose author (an integration's, a CodeMie user's through
// sync) also chooses the body they run over:
//
//   - an equality costs what it can visit of its operands, nested values
//     included (the smaller one), and a value looked for in a list what
//     the list holds: CEL counts a list by its length, so that comparing
//     [[a million values]] cost 1;
//   - matches is refused before it runs when its text is too long for
//     its pattern: an automaton of thousands of steps over megabytes
//     took a minute, and CEL counts a call only once it has run; it costs
//     its work (the text's length times the pattern's steps) over
//     matchCost.
//
// CEL stops an evaluation at MaxCost only after the call that passed it,
// so each evaluation does at most MaxCost units and one call more, which
// these bound by the body's size.

// MaxRegexWork bounds one match, in bytes of text times steps of the
// pattern's automaton (regexp/syntax instructions): a pattern of 50 steps
// matches 160 KB at most.
const MaxRegexWork = 8 << 20

// overCost is a cost past any evaluation's: sizes are counted up to it.
const overCost = MaxCost + 1

// deepCost is the ActualCostEstimator of filters: CEL's, but for
// equalities and lookups in lists.
type deepCost struct{}

// CallCost implements interpreter.ActualCostEstimator.
func (deepCost) CallCost(function, overloadID string, args []ref.Val, _ ref.Val) *uint64 {
	var n uint64
	switch function {
	case operators.Equals, operators.NotEquals:
		// A comparison stops at the first difference: it visits no more
		// than the smaller side holds.
		n = deepSize(args[1], deepSize(args[0], overCost))
	case operators.In:
		n = 1 + deepSize(args[1], overCost)
		if _, isMap := args[1].(traits.Mapper); isMap {
			n = 1 + deepSize(args[0], overCost) // a lookup by key
		}
	case overloads.Matches:
		n = 1
		s, text := args[0].(types.String)
		p, pat := args[1].(types.String)
		if text && pat {
			if re, err := patterns.get(string(p)); err == nil {
				n += uint64(len(s)) * uint64(re.steps) / matchCost
			}
		}
	default:
		return nil
	}
	return &n
}

// deepSize is how many values v holds, nested ones included, a string or
// bytes counting its length: what comparing it can visit. It counts up
// to limit at most, and stops there.
func deepSize(v any, limit uint64) uint64 {
	n := uint64(1)
	add := func(e any) bool {
		if n < limit {
			n += deepSize(e, limit-n)
		}
		return n < limit
	}
	switch v := v.(type) {
	case ref.Val:
		return deepSize(v.Value(), limit)
	case string:
		n += uint64(len(v))
	case []byte:
		n += uint64(len(v))
	case []any:
		for _, e := range v {
			if !add(e) {
				break
			}
		}
	case []ref.Val:
		for _, e := range v {
			if !add(e) {
				break
			}
		}
	case map[string]any:
		for k, e := range v {
			if n += uint64(len(k)); !add(e) {
				break
			}
		}
	case map[ref.Val]ref.Val:
		for k, e := range v {
			if !add(k) || !add(e) {
				break
			}
		}
	}
	return min(n, limit)
}

// matchesFunction is CEL's matches (the function and the method), bounded
// by MaxRegexWork, its patterns compiled once.
var matchesFunction = cel.Function(overloads.Matches,
	cel.Overload("bounded_matches", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType),
	cel.MemberOverload("bounded_matches_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType),
	cel.SingletonBinaryBinding(matches))

// matchCost is a match's cost, in CEL's units: its work (MaxRegexWork's
// units) divided by this.
const matchCost = 16

// matches reports whether text matches pattern, RE2 syntax as CEL's own.
func matches(text, pattern ref.Val) ref.Val {
	s, ok := text.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(text)
	}
	p, ok := pattern.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(pattern)
	}
	re, err := patterns.get(string(p))
	if err != nil {
		return types.NewErr("matches: %v", err)
	}
	if work := uint64(len(s)) * uint64(re.steps); work > MaxRegexWork {
		return types.NewErr("matches: %d bytes of text for a pattern of %d steps is over the limit of %d", len(s), re.steps, MaxRegexWork)
	}
	return types.Bool(re.MatchString(string(s)))
}

// pattern is a compiled regular expression and its automaton's size.
type pattern struct {
	*regexp.Regexp
	steps int
}

// maxPatterns bounds the patterns kept compiled: a filter's own are a few,
// but a pattern can be read from the body.
const maxPatterns = 1024

// patternCache keeps compiled patterns, up to maxPatterns.
type patternCache struct {
	mu sync.Mutex
	m  map[string]pattern
}

var patterns = patternCache{m: map[string]pattern{}}

// get returns src compiled.
func (c *patternCache) get(src string) (pattern, error) {
	c.mu.Lock()
	p, ok := c.m[src]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := compilePattern(src)
	if err != nil {
		return pattern{}, err
	}
	c.mu.Lock()
	if len(c.m) < maxPatterns {
		c.m[src] = p
	}
	c.mu.Unlock()
	return p, nil
}

// compilePattern compiles src and counts its automaton's steps.
func compilePattern(src string) (pattern, error) {
	re, err := regexp.Compile(src)
	if err != nil {
		return pattern{}, err
	}
	parsed, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return pattern{}, err
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return pattern{}, err
	}
	return pattern{Regexp: re, steps: len(prog.Inst)}, nil
}
