package expr

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
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
//     included (the smaller one, which is all that is walked to learn it),
//     and a value looked for in a list what the list holds: CEL counts a
//     list by its length, so that comparing [[a million values]] cost 1;
//   - matches takes only a pattern written in the filter, of at most
//     MaxPatternSteps, compiled with it; it is refused before it runs when
//     its text is too long for its pattern (an automaton of thousands of
//     steps over megabytes took a minute, and CEL counts a call only once
//     it has run), and costs its work (the text's length times the
//     pattern's steps) over matchCost;
//   - any other call CEL counts as 1 costs a tenth of the bytes of the
//     strings it is given, as CEL counts a traversal: size() counts a
//     string's characters, and double() parses all of it.
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
func (deepCost) CallCost(function, overload string, args []ref.Val, _ ref.Val) *uint64 {
	var n uint64
	switch {
	case function == operators.Equals || function == operators.NotEquals:
		// A comparison stops at the first difference: it visits no more
		// than the smaller side holds.
		n = smallerSize(args[0], args[1])
	case function == operators.In:
		if _, isMap := args[1].(traits.Mapper); isMap {
			n = 1 + deepSize(args[0], overCost) // a lookup by key
		} else {
			n = 1 + deepSize(args[1], overCost)
		}
	case function == overloads.Matches:
		n = 1
		s, text := args[0].(types.String)
		p, pat := args[1].(types.String)
		if text && pat {
			if re, err := patterns.get(string(p)); err == nil {
				n += uint64(len(s)) * uint64(re.steps) / matchCost
			}
		}
	case sizedByCEL[overload]:
		return nil
	case strings.HasSuffix(overload, "_with_tz"):
		n = zoneCost // the zone is loaded for each call
	default:
		n = 1 + textSize(args)/traversalCost
	}
	return &n
}

// sizedByCEL are the calls whose cost CEL counts by their operands' size
// itself (string comparisons, concatenations, contains, prefixes).
var sizedByCEL = map[string]bool{
	overloads.StartsWithString: true, overloads.EndsWithString: true, overloads.ContainsString: true,
	overloads.StringToBytes: true, overloads.BytesToString: true, overloads.AddString: true, overloads.AddBytes: true,
	overloads.LessString: true, overloads.GreaterString: true, overloads.LessEqualsString: true, overloads.GreaterEqualsString: true,
	overloads.LessBytes: true, overloads.GreaterBytes: true, overloads.LessEqualsBytes: true, overloads.GreaterEqualsBytes: true,
}

// zoneCost is the cost of a call given a time zone by name, which Go
// loads from the system's zone files for each call (a loop of them, with
// a zone that is not there, took 1 s and 267 MB).
const zoneCost = 1000

// traversalCost is the bytes of a string a unit of cost pays for, as CEL
// counts a traversal (common.StringTraversalCostFactor, 0.1).
const traversalCost = 10

// textSize is the bytes of the strings and bytes among args.
func textSize(args []ref.Val) uint64 {
	var n uint64
	for _, a := range args {
		switch a := a.(type) {
		case types.String:
			n += uint64(len(a))
		case types.Bytes:
			n += uint64(len(a))
		}
	}
	return n
}

// smallerSize is the deep size of the smaller of a and b. Both are walked
// in step, up to a bound that grows fourfold, so that learning it visits
// a few times that size at most, however large the other one is.
func smallerSize(a, b ref.Val) uint64 {
	for limit := uint64(16); ; limit *= 4 {
		limit = min(limit, overCost)
		sa, sb := deepSize(a, limit), deepSize(b, limit)
		if sa < limit || sb < limit || limit == overCost {
			return min(sa, sb)
		}
	}
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

// matches reports whether text matches pattern, RE2 syntax as CEL's own.
// The pattern is one written in a filter (CompileFilter refuses any
// other), compiled when the filter was.
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

// MaxPatternSteps bounds a pattern's automaton, in regexp/syntax
// instructions, its repetitions counted out: x{1000} is a thousand. A
// pattern of 7 KB took 2 s and 451 MB to compile.
const MaxPatternSteps = 10_000

// compiledPattern is a regular expression and its automaton's size.
type compiledPattern struct {
	*regexp.Regexp
	steps int
}

// maxCachedSteps bounds the steps of the patterns kept compiled; when it
// is reached, they are all dropped, and each comes back as it is used.
const maxCachedSteps = 1 << 20

// patternCache keeps the filters' patterns compiled, shared by the
// filters that write the same one.
type patternCache struct {
	mu    sync.Mutex
	m     map[string]compiledPattern
	steps int // of the patterns in m
}

var patterns = patternCache{m: map[string]compiledPattern{}}

// get returns src compiled: kept, or compiled now and kept.
func (c *patternCache) get(src string) (compiledPattern, error) {
	c.mu.Lock()
	p, ok := c.m[src]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := compilePattern(src)
	if err != nil {
		return compiledPattern{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.steps+p.steps > maxCachedSteps {
		clear(c.m)
		c.steps = 0
	}
	if _, ok := c.m[src]; !ok {
		c.m[src] = p
		c.steps += p.steps
	}
	return p, nil
}

// compilePattern compiles src, of at most MaxPatternSteps, and counts its
// automaton's steps. The bound is checked on the parsed pattern, before
// its repetitions are counted out.
func compilePattern(src string) (compiledPattern, error) {
	parsed, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return compiledPattern{}, err
	}
	if patternSize(parsed, MaxPatternSteps) > MaxPatternSteps {
		return compiledPattern{}, fmt.Errorf("the pattern is larger than %d steps", MaxPatternSteps)
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return compiledPattern{}, err
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return compiledPattern{}, err
	}
	return compiledPattern{Regexp: re, steps: len(prog.Inst)}, nil
}

// patternSize is about the instructions re compiles to, each repetition
// counted out, up to limit+1 (more is counted as limit+1).
func patternSize(re *syntax.Regexp, limit int) int {
	n := 1
	for _, sub := range re.Sub {
		n = min(n+patternSize(sub, limit), limit+1)
	}
	switch re.Op {
	case syntax.OpLiteral:
		n += len(re.Rune)
	case syntax.OpRepeat:
		times := max(re.Min, re.Max)
		if re.Max < 0 {
			times = re.Min + 1
		}
		n *= max(times, 1)
	}
	return min(n, limit+1)
}

// patternsOf returns the patterns root matches against: each must be a
// string written in the expression (a pattern from the body would be
// compiled for each call, with its cost unknown until it is).
func patternsOf(root celast.Expr) ([]string, error) {
	var found []string
	var err error
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
				found = append(found, string(s))
				return
			}
		}
		err = errors.New("the pattern of matches must be a string written in the filter")
	}))
	return found, err
}
