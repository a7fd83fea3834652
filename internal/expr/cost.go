package expr

import (
	"regexp"
	"regexp/syntax"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
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
//     matchCost, and a pattern that is not the filter's own its length
//     too, as it is compiled for each call.
//
// CEL stops an evaluation at MaxCost only after the call that passed it,
// so each evaluation does at most MaxCost units and one call more, which
// these bound by the body's size.

// MaxRegexWork bounds one match, in bytes of text times steps of the
// pattern's automaton (regexp/syntax instructions): a pattern of 50 steps
// matches 160 KB at most.
const MaxRegexWork = 8 << 20

// matchCost divides a match's work into CEL's units: a match of
// MaxRegexWork costs a third of MaxCost.
const matchCost = 3 * MaxRegexWork / MaxCost

// overCost is a cost past any evaluation's: sizes are counted up to it.
const overCost = MaxCost + 1

// deepCost is the ActualCostEstimator of filters: CEL's, but for
// equalities, lookups in lists and matches.
type deepCost struct{}

// CallCost implements interpreter.ActualCostEstimator.
func (deepCost) CallCost(function, _ string, args []ref.Val, _ ref.Val) *uint64 {
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
			steps, own := patterns.steps(string(p))
			if !own {
				steps = len(p)
				n += uint64(len(p))
			}
			n += uint64(len(s)) * uint64(steps) / matchCost
		}
	default:
		return nil
	}
	return &n
}

// deepSize is how many values v holds, nested ones included, a string or
// bytes counting its length: what comparing it can visit. It counts up
// to limit at most, and stops there; a list or a map is walked, never
// made whole (a list joined with + is made whole by its Value).
func deepSize(v ref.Val, limit uint64) uint64 {
	if limit == 0 {
		return 0
	}
	n := uint64(1)
	switch v := v.(type) {
	case traits.Lister:
		size, _ := v.Size().(types.Int)
		if uint64(max(size, 0)) >= limit {
			return limit
		}
		for i := types.Int(0); i < size && n < limit; i++ {
			n += deepSize(v.Get(i), limit-n)
		}
	case traits.Mapper:
		size, _ := v.Size().(types.Int)
		if uint64(max(size, 0)) >= limit {
			return limit
		}
		for it := v.Iterator(); n < limit && it.HasNext() == types.True; {
			k := it.Next()
			if n += deepSize(k, limit-n); n < limit {
				n += deepSize(v.Get(k), limit-n)
			}
		}
	case types.String:
		n += uint64(len(v))
	case types.Bytes:
		n += uint64(len(v))
	}
	return min(n, limit)
}

// matchesFunction is CEL's matches (the function and the method), bounded
// by MaxRegexWork.
var matchesFunction = cel.Function(overloads.Matches,
	cel.Overload("bounded_matches", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType),
	cel.MemberOverload("bounded_matches_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType),
	cel.SingletonBinaryBinding(matches))

// matches reports whether text matches pattern, RE2 syntax as CEL's own:
// one of a filter's own patterns compiled when the filter was, any other
// for this call.
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

// compiledPattern is a regular expression and its automaton's size.
type compiledPattern struct {
	*regexp.Regexp
	steps int
}

// maxPatterns bounds the patterns kept compiled; when it is reached, they
// are all dropped, and each filter's come back as it is compiled again.
const maxPatterns = 1024

// patternCache keeps the filters' own patterns (the literals they match),
// compiled. A pattern read from the body is compiled for each call, and
// never kept: kept, megabytes of them stayed for good.
type patternCache struct {
	mu sync.Mutex
	m  map[string]compiledPattern
}

var patterns = patternCache{m: map[string]compiledPattern{}}

// keep compiles a filter's own pattern and keeps it.
func (c *patternCache) keep(src string) error {
	p, err := compilePattern(src)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxPatterns {
		clear(c.m)
	}
	c.m[src] = p
	return nil
}

// get returns src compiled: kept, or compiled now.
func (c *patternCache) get(src string) (compiledPattern, error) {
	c.mu.Lock()
	p, ok := c.m[src]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	return compilePattern(src)
}

// steps returns the steps of a kept pattern, and whether it is kept.
func (c *patternCache) steps(src string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[src]
	return p.steps, ok
}

// compilePattern compiles src and counts its automaton's steps.
func compilePattern(src string) (compiledPattern, error) {
	re, err := regexp.Compile(src)
	if err != nil {
		return compiledPattern{}, err
	}
	parsed, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return compiledPattern{}, err
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return compiledPattern{}, err
	}
	return compiledPattern{Regexp: re, steps: len(prog.Inst)}, nil
}

// ownPatterns are the string literals root matches against: the patterns
// a filter names itself.
func ownPatterns(root celast.Expr) []string {
	var own []string
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.CallKind || e.AsCall().FunctionName() != overloads.Matches {
			return
		}
		args := e.AsCall().Args()
		if len(args) == 0 {
			return
		}
		if lit := args[len(args)-1]; lit.Kind() == celast.LiteralKind {
			if s, ok := lit.AsLiteral().(types.String); ok {
				own = append(own, string(s))
			}
		}
	}))
	return own
}
